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

    A state dict whose ``to_img`` was trained for another scale loads once :func:`resample_head_of`
    (called by :func:`esc_arch.checkpoint.adapt_state_dict`) has resampled it: the paper's x2 -> x3/x4 start.
    """

    def init_pixel_shuffle_head(self, dim: int, scale: int) -> None:
        """Check the scale (the option ``upscaling_factor``) and create ``to_img``."""
        require_positive_int('upscaling_factor', scale)
        self.upscaling_factor = scale
        self.to_img = nn.Conv2d(dim, 3 * scale ** 2, 3, padding=1)

    def upscale(self, feat: Tensor, residual: Tensor | None = None) -> Tensor:
        """``pixel_shuffle(to_img(feat) + residual)``; ``residual`` has ``3*s*s`` channels (or is None)."""
        out = self.to_img(feat)
        if residual is not None:
            out = out + residual
        return F.pixel_shuffle(out, self.upscaling_factor)

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, upscaling_factor={self.upscaling_factor}'


PIXEL_SHUFFLE_HEAD = ('to_img.weight', 'to_img.bias')
"""The state-dict keys of :class:`PixelShuffleHeadMixin`'s head."""


def resample_head_of(state_dict: dict[str, Tensor], scale: int) -> tuple[dict[str, Tensor], int | None]:
    """``state_dict`` with a pixel-shuffle ``to_img`` of another scale resampled to ``scale``.

    Returns:
        tuple: The state dict (a new dict where something was resampled, else ``state_dict`` itself) and
        the scale its head was trained for where it was resampled (None where nothing was done).
    """
    weight = state_dict.get(PIXEL_SHUFFLE_HEAD[0])
    if weight is None or weight.shape[0] == 3 * scale ** 2:
        return state_dict, None
    source_scale = math.isqrt(weight.shape[0] // 3)
    if 3 * source_scale ** 2 != weight.shape[0]:
        return state_dict, None  # not a pixel-shuffle head: the strict load explains the mismatch
    adapted = dict(state_dict)
    for key in PIXEL_SHUFFLE_HEAD:
        if key in adapted:
            adapted[key] = resample_pixel_shuffle_head(adapted[key], scale)
    return adapted, source_scale


REAL_UPSAMPLER_SCALES = (2, 4)
"""Scales ESC-Real's upsampler is defined for."""


def real_upsampler(dim: int, scale: int) -> nn.Sequential:
    """ESC-Real's ``to_img``: x2 stages of upsampling + 3x3 conv + LeakyReLU(0.2), two more convs to RGB.

    x4 (the authors'): [nearest x2, conv, lrelu, nearest x2, conv, lrelu, conv, lrelu, conv], parameters
    at indices 1, 4, 6, 8. x2: [conv dim -> 4 dim, pixel shuffle x2, lrelu, conv, lrelu, conv], parameters
    at 0, 3, 5; its first layer, absent at x4, gives the scale away (:func:`real_upsampler_scale`).
    """
    require(scale in REAL_UPSAMPLER_SCALES, 'upscaling_factor',
            f'must be one of {REAL_UPSAMPLER_SCALES} for ESCReal; got {scale!r}')
    conv = lambda out: nn.Conv2d(dim, out, 3, padding=1)  # noqa: E731
    if scale == 2:
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
