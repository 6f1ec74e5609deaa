"""ESC-Real: the network for real-world degradations, with a learned input skip and a conv upsampler."""
import torch.nn as nn
from torch import Tensor

from basicsr.utils.registry import ARCH_REGISTRY

from .config import records_config
from .heads import real_upsampler
from .layers import MirrorPaddedConv2d, PointwiseConv2d, working_layout
from .trunk import ESCTrunk


@ARCH_REGISTRY.register()
class ESCReal(ESCTrunk):
    """ESC-Real network: :class:`ESCTrunk` with LayerNorms, an input branch ``skip`` added to its features,
    and a conv upsampler ``to_img`` (see :func:`~esc_arch.archs.heads.real_upsampler`).

    The authors published x4; x2 has an upsampler of its own (a pixel-shuffle stage). Any batch
    size and any input size (height and width >= 1) work. Arguments are keyword-only; ``network.config``
    holds them.

    Args:
        dim, pdim, kernel_size, conv_blocks, window_size, num_heads, attn_type: As for :class:`ESCTrunk`
            (same defaults).
        n_blocks (int): Number of blocks. Default: 10.
        upscaling_factor (int): Scale, 2 or 4. Default: 4.
        exp_ratio (float): Expansion of the ConvFFNs beside ConvAttn. Default: 2.
    """

    @records_config
    def __init__(self, *, dim: int = 64, pdim: int = 16, kernel_size: int = 13, n_blocks: int = 10,
                 conv_blocks: int = 5, window_size: int = 32, num_heads: int = 4, upscaling_factor: int = 4,
                 exp_ratio: float = 2.0, attn_type: str = 'auto') -> None:
        upsampler = real_upsampler(dim, upscaling_factor)  # checks the scale before building the trunk
        super().__init__(dim=dim, pdim=pdim, kernel_size=kernel_size, n_blocks=n_blocks, conv_blocks=conv_blocks,
                         window_size=window_size, num_heads=num_heads, exp_ratio=exp_ratio, attn_type=attn_type,
                         use_ln=True)
        self.upscaling_factor = upscaling_factor
        self.to_img = upsampler
        self.skip = nn.Sequential(
            PointwiseConv2d(3, dim * 2),
            MirrorPaddedConv2d(dim * 2, dim * 2, 7, padding=3, groups=dim * 2),
            nn.LeakyReLU(0.2),
            PointwiseConv2d(dim * 2, dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = working_layout(x)
        return self.to_img(self.features(x) + self.skip(x))

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, upscaling_factor={self.upscaling_factor}'
