"""Arbitrary-scale networks (ESC+LTE) in the inference path: which networks they are, and their output size.

An arbitrary-scale network has no scale of its own: the scale is a request (``--scale 3.5``), the
output of an ``h x w`` image is ``round(h * S) x round(w * S)``, and every output pixel is queried.
"""
from esc_arch.archs.introspection import is_arbitrary_scale

__all__ = ['is_arbitrary_scale', 'output_size']


def output_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """``round(height * scale) x round(width * scale)``, at least 1x1."""
    return max(round(height * scale), 1), max(round(width * scale), 1)

