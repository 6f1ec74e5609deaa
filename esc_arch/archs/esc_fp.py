"""ESC-FP: the fast variant with a decomposed shared kernel and a bicubic image skip."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from basicsr.utils.registry import ARCH_REGISTRY

from .blocks import SharedKernel
from .config import records_config
from .heads import PixelShuffleHeadMixin
from .layers import working_layout
from .trunk import TrunkBase


@ARCH_REGISTRY.register()
class ESCFP(PixelShuffleHeadMixin, TrunkBase):
    """ESC-FP network: shared kernel split into a 1x1 channel mix and a depthwise k x k kernel.

    Built like ESC (see :class:`TrunkBase`) with a LayerNorm before ``last``, LayerNorms before every
    ConvFFN, and a bicubic image skip. Any batch size and any input size (height and width >= 1)
    work. A state dict trained for another scale loads after :func:`esc_arch.checkpoint.adapt_state_dict`
    resamples its ``to_img``. Arguments are keyword-only; ``network.config`` holds them.

    Args:
        pdim, kernel_size, n_blocks, conv_blocks, window_size, exp_ratio, attn_type: As for :class:`ESCTrunk`
            (same defaults); ``kernel_size`` is the side of the depthwise kernel ``lk_spatial``.
        dim (int): Feature channels. Default: 48.
        num_heads (int): Attention heads (must divide dim). Default: 3.
        upscaling_factor (int): Scale. Default: 4.
    """

    @records_config
    def __init__(self, *, dim: int = 48, pdim: int = 16, kernel_size: int = 13, n_blocks: int = 5,
                 conv_blocks: int = 5, window_size: int = 32, num_heads: int = 3, upscaling_factor: int = 4,
                 exp_ratio: float = 1.25, attn_type: str = 'auto') -> None:
        super().__init__(dim=dim, pdim=pdim, kernel_size=kernel_size, n_blocks=n_blocks, conv_blocks=conv_blocks,
                         window_size=window_size, num_heads=num_heads, exp_ratio=exp_ratio, attn_type=attn_type,
                         use_ln=True, proj_exp_ratio=1.5, decomposed=True, norm_before_last=True)
        self.init_pixel_shuffle_head(dim, upscaling_factor)

    def init_shared_kernel(self) -> None:
        self.lk_channel = nn.Parameter(torch.empty(self.pdim, self.pdim, 1, 1))
        self.lk_spatial = nn.Parameter(torch.empty(self.pdim, 1, self.kernel_size, self.kernel_size))
        nn.init.orthogonal_(self.lk_channel)
        nn.init.orthogonal_(self.lk_spatial)

    def shared_kernel(self) -> SharedKernel:
        """``lk_spatial`` after the channel mix ``lk_channel`` (no geometric re-parameterisation)."""
        return SharedKernel(self.lk_spatial, channel_mix=self.lk_channel)

    def forward(self, x: Tensor) -> Tensor:
        x = working_layout(x)
        return self.upscale(self.features(x)) + F.interpolate(x, scale_factor=self.upscaling_factor, mode='bicubic')
