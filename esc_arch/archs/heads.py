"""The upsampling heads of the ESC networks: a pixel-shuffle head and ESC-Real's conv upsamplers."""
import math

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .layers import require, require_positive_int


def resample_pixel_shuffle_head(tensor: Tensor, scale: int) -> Tensor:
    """Resize a ``3*s_in*s_in``-output conv weight or bias (before pixel shuffle) to scale ``scale``.

    Its output channels, viewed as ``(3, s_in, s_in)``, are resized bilinearly (align_corners
    false) to ``(3, scale, scale)``.
    """
    s_in = math.isqrt(tensor.shape[0] // 3)
    rest = tensor.shape[1:]
    grid = tensor.reshape(3, s_in, s_in, -1).permute(0, 3, 1, 2).reshape(1, -1, s_in, s_in)
    grid = F.interpolate(grid.float(), size=(scale, scale), mode='bilinear', align_corners=False).to(tensor.dtype)
    return grid.reshape(3, -1, scale, scale).permute(0, 2, 3, 1).reshape(3 * scale * scale, *rest)


class PixelShuffleHeadMixin:
    """The head ``to_img`` (3x3 conv dim -> 3*s*s, then pixel shuffle) of ESC and ESC-FP.

    A state dict whose ``to_img`` was trained for another scale loads strictly: it is resampled
    (the paper's x2 -> x3/x4 start, see :func:`resample_pixel_shuffle_head`).
    """

    def init_pixel_shuffle_head(self, dim: int, upscaling_factor: int) -> None:
        """Check the scale and create ``to_img``."""
        require_positive_int('upscaling_factor', upscaling_factor)
        self.upscaling_factor = upscaling_factor
        self.to_img = nn.Conv2d(dim, 3 * upscaling_factor ** 2, 3, padding=1)

    def upscale(self, feat: Tensor, residual: Tensor | None = None) -> Tensor:
        """``pixel_shuffle(to_img(feat) + residual)``; ``residual`` has ``3*s*s`` channels (or is None)."""
        out = self.to_img(feat)
        if residual is not None:
            out = out + residual
        return F.pixel_shuffle(out, self.upscaling_factor)

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, upscaling_factor={self.upscaling_factor}'

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        channels = 3 * self.upscaling_factor ** 2
        for name in ('weight', 'bias'):
            key = f'{prefix}to_img.{name}'
            stored = state_dict.get(key)
            if stored is None or stored.shape[0] == channels:
                continue
            s_in = math.isqrt(stored.shape[0] // 3)
            if 3 * s_in * s_in == stored.shape[0]:
                state_dict[key] = resample_pixel_shuffle_head(stored, self.upscaling_factor)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


REAL_UPSAMPLER_SCALES = (2, 4)
"""Scales ESC-Real's upsampler is defined for."""


def real_upsampler(dim: int, upscaling_factor: int) -> nn.Sequential:
    """ESC-Real's ``to_img``: x2 stages of upsampling + 3x3 conv + LeakyReLU(0.2), two more convs to RGB.

    x4 (the authors'): [nearest x2, conv, lrelu, nearest x2, conv, lrelu, conv, lrelu, conv], parameters
    at indices 1, 4, 6, 8. x2: [conv dim -> 4 dim, pixel shuffle x2, lrelu, conv, lrelu, conv], parameters
    at 0, 3, 5; its first layer, absent at x4, gives the scale away (:func:`real_upsampler_scale`).
    """
    require(upscaling_factor in REAL_UPSAMPLER_SCALES, 'upscaling_factor',
            f'must be one of {REAL_UPSAMPLER_SCALES} for ESCReal; got {upscaling_factor!r}')
    conv = lambda out: nn.Conv2d(dim, out, 3, padding=1)  # noqa: E731
    if upscaling_factor == 2:
        return nn.Sequential(conv(4 * dim), nn.PixelShuffle(2), nn.LeakyReLU(0.2), conv(dim), nn.LeakyReLU(0.2),
                             conv(3))
    return nn.Sequential(nn.Upsample(scale_factor=2, mode='nearest'), conv(dim), nn.LeakyReLU(0.2),
                         nn.Upsample(scale_factor=2, mode='nearest'), conv(dim), nn.LeakyReLU(0.2),
                         conv(dim), nn.LeakyReLU(0.2), conv(3))


def real_upsampler_scale(state_dict: dict[str, Tensor], prefix: str = 'to_img.') -> int | None:
    """Scale of the ESC-Real upsampler stored under ``prefix`` in ``state_dict``, or None if there is none."""
    first = state_dict.get(f'{prefix}0.weight')
    if first is not None:  # the x2 upsampler's pixel-shuffle conv: dim -> r*r*dim
        return math.isqrt(first.shape[0] // first.shape[1])
    return 4 if f'{prefix}8.weight' in state_dict else None
