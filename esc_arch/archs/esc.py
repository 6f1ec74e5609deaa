"""ESC: the classical super-resolution network (also ESC-light and ESC-XL)."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY

from .base import ESCBase, PixelShuffleHeadMixin, SharedKernelMixin
from .blocks import Block
from .layers import working_layout


@ARCH_REGISTRY.register()
class ESC(SharedKernelMixin, PixelShuffleHeadMixin, ESCBase):
    """ESC network (Lee, Yun and Ro, ICCV 2025) with a pixel-shuffle head and a nearest-neighbour image skip.

    Any batch size and any input size (height and width >= 1) work; the attention layers pad
    internally. A state dict trained for another scale loads strictly: its ``to_img`` is
    resampled to this network's scale.

    Args:
        dim (int): Feature channels. Default: 64.
        pdim (int): Channels ConvAttn acts on (4 <= pdim <= dim). Default: 16.
        kernel_size (int): Side of the shared large kernel (odd). Default: 13.
        n_blocks (int): Number of blocks. Default: 5.
        conv_blocks (int): ConvAttn layers per block. Default: 5.
        window_size (int): Side of the self-attention windows. Default: 32.
        num_heads (int): Attention heads (must divide dim). Default: 4.
        upscaling_factor (int): Scale. Default: 4.
        exp_ratio (float): Expansion of the ConvFFNs beside ConvAttn. Default: 1.25.
        attn_type (str): Attention backend: ``auto``, ``naive``, ``sdpa`` or ``flex``. Default: ``auto``.
        use_ln (bool): LayerNorm before those ConvFFNs (ESC-XL). Default: False.
    """

    def __init__(self, dim=64, pdim=16, kernel_size=13, n_blocks=5, conv_blocks=5, window_size=32, num_heads=4,
                 upscaling_factor=4, exp_ratio=1.25, attn_type='auto', use_ln=False):
        super().__init__(dim, pdim, kernel_size, n_blocks, conv_blocks, window_size, num_heads, upscaling_factor,
                         exp_ratio, attn_type)
        self.use_ln = use_ln
        self._init_shared_kernel()
        self.proj = nn.Conv2d(3, dim, 3, padding=1)
        self.blocks = nn.ModuleList([
            Block(dim, pdim, conv_blocks, window_size, num_heads, exp_ratio, self.attn_type, use_ln)
            for _ in range(n_blocks)
        ])
        self.last = nn.Conv2d(dim, dim, 3, padding=1)
        self.to_img = nn.Conv2d(dim, 3 * upscaling_factor ** 2, 3, padding=1)

    def forward(self, x):
        x = working_layout(x)
        feat = self.proj(x)
        skip = feat
        large_kernel = self.large_kernel()
        for block in self.blocks:
            feat = block(feat, large_kernel)
        feat = self.last(feat) + skip
        s = self.upscaling_factor
        return F.pixel_shuffle(self.to_img(feat) + torch.repeat_interleave(x, s * s, dim=1), s)

    def extra_repr(self):
        return f'{super().extra_repr()}, use_ln={self.use_ln}'
