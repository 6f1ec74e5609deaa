"""ESC-Real: the x4 network for real-world degradations, with a learned input skip and a conv upsampler."""
import torch.nn as nn
from basicsr.utils.registry import ARCH_REGISTRY

from .base import ESCBase, SharedKernelMixin
from .blocks import Block
from .layers import MirrorPaddedConv2d, PointwiseConv2d, working_layout


@ARCH_REGISTRY.register()
class ESCReal(SharedKernelMixin, ESCBase):
    """ESC-Real network: ESC blocks, an input branch added to the features, nearest+conv upsampling.

    Any batch size and any input size (height and width >= 1) work.

    Args:
        dim (int): Feature channels. Default: 64.
        pdim (int): Channels ConvAttn acts on (4 <= pdim <= dim). Default: 16.
        kernel_size (int): Side of the shared large kernel (odd). Default: 13.
        n_blocks (int): Number of blocks. Default: 10.
        conv_blocks (int): ConvAttn layers per block. Default: 5.
        window_size (int): Side of the self-attention windows. Default: 32.
        num_heads (int): Attention heads (must divide dim). Default: 4.
        upscaling_factor (int): Scale; only 4 is supported. Default: 4.
        exp_ratio (float): Expansion of the ConvFFNs beside ConvAttn. Default: 2.
        attn_type (str): Attention backend: ``auto``, ``naive``, ``sdpa`` or ``flex``. Default: ``auto``.
    """

    def __init__(self, dim=64, pdim=16, kernel_size=13, n_blocks=10, conv_blocks=5, window_size=32, num_heads=4,
                 upscaling_factor=4, exp_ratio=2.0, attn_type='auto'):
        if upscaling_factor != 4:
            raise ValueError(f'upscaling_factor must be 4 for ESCReal (its upsampler is two x2 stages); '
                             f'got {upscaling_factor!r}')
        super().__init__(dim, pdim, kernel_size, n_blocks, conv_blocks, window_size, num_heads, upscaling_factor,
                         exp_ratio, attn_type)
        self._init_shared_kernel()
        self.proj = nn.Conv2d(3, dim, 3, padding=1)
        self.skip = nn.Sequential(
            PointwiseConv2d(3, dim * 2),
            MirrorPaddedConv2d(dim * 2, dim * 2, 7, padding=3, groups=dim * 2),
            nn.LeakyReLU(0.2),
            PointwiseConv2d(dim * 2, dim),
        )
        self.blocks = nn.ModuleList([
            Block(dim, pdim, conv_blocks, window_size, num_heads, exp_ratio, self.attn_type, use_ln=True)
            for _ in range(n_blocks)
        ])
        self.last = nn.Conv2d(dim, dim, 3, padding=1)
        self.to_img = nn.Sequential(
            nn.Upsample(scale_factor=2, mode='nearest'), nn.Conv2d(dim, dim, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Upsample(scale_factor=2, mode='nearest'), nn.Conv2d(dim, dim, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(dim, dim, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(dim, 3, 3, padding=1),
        )

    def forward(self, x):
        x = working_layout(x)
        feat = self.proj(x)
        skip = feat
        large_kernel = self.large_kernel()
        for block in self.blocks:
            feat = block(feat, large_kernel)
        return self.to_img(self.last(feat) + skip + self.skip(x))
