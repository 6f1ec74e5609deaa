"""Bicubic upsampling as a network: the baseline row of every SR table."""
from torch import Tensor, nn

from esc_arch.data.matlab_resize import matlab_imresize

from basicsr.utils.registry import ARCH_REGISTRY

from .config import ConfigMixin, records_config


@ARCH_REGISTRY.register()
class Bicubic(ConfigMixin, nn.Module):
    """MATLAB ``imresize(LR, s, 'bicubic')`` upsampling, with no learned weights.

    Evaluated through ``basicsr test`` it gives the literature's bicubic baselines (e.g. Set5 x4
    28.43 dB PSNR-Y, as MATLAB computes it), so that a test YAML can check a data layout and the
    evaluation protocol before any model is trained.

    Args:
        upscaling_factor (int): Upscaling factor. Default: 4.
    """

    @records_config
    def __init__(self, *, upscaling_factor: int = 4) -> None:
        super().__init__()
        self.upscaling_factor = upscaling_factor

    def forward(self, x: Tensor) -> Tensor:
        return matlab_imresize(x, self.upscaling_factor)

    def extra_repr(self) -> str:
        return f'upscaling_factor={self.upscaling_factor}'
