"""ESC-FP: the fast variant with a decomposed shared kernel and a bicubic image skip."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY

from .base import ESCBase, PixelShuffleHeadMixin
from .blocks import Block, LayerNorm2d
from .layers import working_layout


@ARCH_REGISTRY.register()
class ESCFP(PixelShuffleHeadMixin, ESCBase):
    """ESC-FP network: shared kernel split into a 1x1 channel mix and a depthwise k x k kernel.

    Any batch size and any input size (height and width >= 1) work. A state dict trained for
    another scale loads strictly (``to_img`` is resampled).

    Args:
        dim (int): Feature channels. Default: 48.
        pdim (int): Channels ConvAttn acts on (4 <= pdim <= dim). Default: 16.
        kernel_size (int): Side of the shared depthwise kernel (odd, >= 3). Default: 13.
        n_blocks (int): Number of blocks. Default: 5.
        conv_blocks (int): ConvAttn layers per block. Default: 5.
        window_size (int): Side of the self-attention windows. Default: 32.
        num_heads (int): Attention heads (must divide dim). Default: 3.
        upscaling_factor (int): Scale. Default: 4.
        exp_ratio (float): Expansion of the ConvFFNs beside ConvAttn. Default: 1.25.
        attn_type (str): Attention backend: ``auto``, ``naive``, ``sdpa`` or ``flex``. Default: ``auto``.
    """

    def __init__(self, dim=48, pdim=16, kernel_size=13, n_blocks=5, conv_blocks=5, window_size=32, num_heads=3,
                 upscaling_factor=4, exp_ratio=1.25, attn_type='auto'):
        super().__init__(dim, pdim, kernel_size, n_blocks, conv_blocks, window_size, num_heads, upscaling_factor,
                         exp_ratio, attn_type)
        self.lk_channel = nn.Parameter(torch.empty(pdim, pdim, 1, 1))
        self.lk_spatial = nn.Parameter(torch.empty(pdim, 1, kernel_size, kernel_size))
        nn.init.orthogonal_(self.lk_channel)
        nn.init.orthogonal_(self.lk_spatial)
        self.proj = nn.Conv2d(3, dim, 3, padding=1)
        self.blocks = nn.ModuleList([
            Block(dim, pdim, conv_blocks, window_size, num_heads, exp_ratio, self.attn_type, use_ln=True,
                  proj_exp_ratio=1.5, decomposed=True) for _ in range(n_blocks)
        ])
        self.ln_last = LayerNorm2d(dim)
        self.last = nn.Conv2d(dim, dim, 3, padding=1)
        self.to_img = nn.Conv2d(dim, 3 * upscaling_factor ** 2, 3, padding=1)

    def convert(self):
        """Nothing to bake: ESC-FP has no geometric re-parameterisation. Returns self."""
        return self

    def forward(self, x):
        x = working_layout(x)
        feat = self.proj(x)
        skip = feat
        large_kernel = (self.lk_channel, self.lk_spatial)
        for block in self.blocks:
            feat = block(feat, large_kernel)
        feat = self.last(self.ln_last(feat)) + skip
        s = self.upscaling_factor
        return F.pixel_shuffle(self.to_img(feat), s) + F.interpolate(x, scale_factor=s, mode='bicubic')
