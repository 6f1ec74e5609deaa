"""ESC: the classical super-resolution network (also ESC-light and ESC-XL)."""
import torch
from torch import Tensor

from basicsr.utils.registry import ARCH_REGISTRY

from .config import records_config
from .heads import PixelShuffleHeadMixin
from .layers import working_layout
from .trunk import ESCTrunk


@ARCH_REGISTRY.register()
class ESC(PixelShuffleHeadMixin, ESCTrunk):
    """ESC network (Lee, Yun and Ro, ICCV 2025): :class:`ESCTrunk`, a pixel-shuffle head and a nearest-neighbour skip.

    Any batch size and any input size (height and width >= 1) work; the attention layers pad
    internally. A state dict trained for another scale loads after
    :func:`esc_arch.checkpoint.adapt_state_dict` resamples its ``to_img``. Arguments are keyword-only;
    ``network.config`` holds them.

    Args:
        dim, pdim, kernel_size, n_blocks, conv_blocks, window_size, num_heads, exp_ratio, attn_type, use_ln:
            The trunk's, as for :class:`ESCTrunk` (same defaults; ``use_ln`` is ESC-XL's).
        upscaling_factor (int): Scale. Default: 4.
    """

    @records_config
    def __init__(self, *, dim: int = 64, pdim: int = 16, kernel_size: int = 13, n_blocks: int = 5,
                 conv_blocks: int = 5, window_size: int = 32, num_heads: int = 4, upscaling_factor: int = 4,
                 exp_ratio: float = 1.25, attn_type: str = 'auto', use_ln: bool = False) -> None:
        super().__init__(dim=dim, pdim=pdim, kernel_size=kernel_size, n_blocks=n_blocks, conv_blocks=conv_blocks,
                         window_size=window_size, num_heads=num_heads, exp_ratio=exp_ratio, attn_type=attn_type,
                         use_ln=use_ln)
        self.init_pixel_shuffle_head(dim, upscaling_factor)

    def forward(self, x: Tensor) -> Tensor:
        x = working_layout(x)
        s = self.upscaling_factor
        return self.upscale(self.features(x), torch.repeat_interleave(x, s * s, dim=1))
