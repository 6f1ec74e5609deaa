"""Arbitrary-scale networks (ESC+LTE) in the inference path: output size and whole/tiled upscaling.

An arbitrary-scale network has no scale of its own: the scale is a request (``--scale 3.5``), the
output of an ``h x w`` image is ``round(h * S) x round(w * S)``, and every output pixel is queried.
"""
from collections.abc import Callable

from torch import Tensor, nn

from esc_arch.archs.introspection import bare_network, is_arbitrary_scale

__all__ = ['is_arbitrary_scale', 'output_size', 'upscale_arbitrary']


def output_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """``round(height * scale) x round(width * scale)``, at least 1x1."""
    return max(round(height * scale), 1), max(round(width * scale), 1)


def upscale_arbitrary(network: nn.Module, lr: Tensor, scale: float, tile_size: int | None = None,
                      tile_pad: int = 32, progress: Callable[[int, int], None] | None = None) -> Tensor:
    """Upscale ``(N, 3, h, w)`` by ``scale`` with an arbitrary-scale network; tiles of ``tile_size`` LR pixels.

    Beyond the training scales the cell is clipped as the authors evaluate (``ESCLTE.upscale``).
    """
    return bare_network(network).upscale(lr, output_size(*lr.shape[-2:], scale), scale=scale, tile_size=tile_size,
                        tile_pad=max(tile_pad, 1), progress=progress)
