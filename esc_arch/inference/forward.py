"""The one test-time forward: window padding, tiling and the x8 self-ensemble, for every network and caller.

``ESCModel.test`` (validation, ``basicsr test``), ``ArbitraryScaleModel.test`` and ``basicsr upscale``
(:func:`~esc_arch.inference.upscale_image`) all run :func:`forward_image`, so an image gives the same
output whichever of them produces it. Its defaults are the ones of all of them:

* ``pad_to_window=True``: the authors' test protocol (their ``ESRModel.test``, with which the paper's
  tables were made): the LR is reflect-padded at the bottom and right to multiples of the network's
  window, and the output cropped (:func:`~esc_arch.inference.window_padding.forward_padded_to_window`).
  Networks without windows are fed as they are; arbitrary-scale networks (ESC-LTE) are never padded,
  as the authors evaluate them.
* ``tile=0``: the whole image at once. A tile size is rounded up to a multiple of the window, so
  that the tiles cut the (padded) image into the same windows as a whole-image pass.
* ``tile_pad=None``: :data:`DEFAULT_TILE_PAD_WINDOWS` windows of context around each tile, at least
  :data:`MIN_TILE_PAD` pixels; a given context is rounded up to a multiple of the window too. Two
  windows keep tiled outputs within about 1e-3 of a whole-image pass.
* ``self_ensemble=False``: no averaging over flips and transposes.
"""
from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor, nn

from esc_arch.archs.esc_lte import DEFAULT_QUERY_CHUNK
from esc_arch.archs.introspection import bare_network, network_scale, network_window

from .arbitrary_scale import is_arbitrary_scale, output_size
from .tiling import tiled_forward
from .window_padding import forward_padded_to_window

__all__ = ['DEFAULT_TILE_PAD_WINDOWS', 'MIN_TILE_PAD', 'average_over_views', 'forward_image', 'tiling_for']

DEFAULT_TILE_PAD_WINDOWS = 2
MIN_TILE_PAD = 16

Progress = Callable[[int, int], None]


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def tiling_for(network: nn.Module, tile: int | None = 0, tile_pad: int | None = None) -> tuple[int, int]:
    """The tile size and context :func:`forward_image` uses for ``network`` (see the module's docstring).

    Raises:
        ValueError: ``tile`` or ``tile_pad`` is negative.
    """
    tile = tile or 0
    if tile < 0 or (tile_pad or 0) < 0:
        raise ValueError(f'tile and tile_pad must be non-negative; got {tile} and {tile_pad}')
    window = network_window(network)
    if tile_pad is None:
        tile_pad = max(DEFAULT_TILE_PAD_WINDOWS * window, MIN_TILE_PAD)
    return _round_up(tile, window), _round_up(tile_pad, window)


def average_over_views(forward: Callable[[Tensor, bool], Tensor], images: Tensor) -> Tensor:
    """Average ``forward(view, transposed)`` over the 8 flips/transposes of ``images``, each mapped back."""
    total = 0
    for transpose in (False, True):
        for flips in ((), (-1, ), (-2, ), (-2, -1)):
            view = images.transpose(-2, -1) if transpose else images
            output = forward(view.flip(flips) if flips else view, transpose)
            output = output.flip(flips) if flips else output
            total = total + (output.transpose(-2, -1) if transpose else output)
    return total / 8


@torch.no_grad()
def forward_image(network: nn.Module, lr: Tensor, *, scale: float | None = None, tile: int | None = 0,
                  tile_pad: int | None = None, pad_to_window: bool = True, self_ensemble: bool = False,
                  out_size: tuple[int, int] | None = None, query_chunk: int = DEFAULT_QUERY_CHUNK,
                  clip_cell: bool = True, progress: Progress | None = None) -> Tensor:
    """Upscale the batch ``lr`` ``(N, 3, h, w)`` in [0, 1] with ``network`` at test time.

    Args:
        network (nn.Module): A fixed-scale network (``(N, 3, h, w) -> (N, 3, h*s, w*s)``), possibly
            wrapped (DDP, ``torch.compile``), or an arbitrary-scale one (ESC-LTE, run through its
            ``upscale``). It is called as given, in the mode it is in.
        lr (Tensor): The input batch.
        scale (float | None): The upscaling factor; default: the network's own. Required for an
            arbitrary-scale network (unless ``out_size`` is given).
        tile (int | None): Tile side in LR pixels, rounded up to whole windows; 0/None: whole image.
        tile_pad (int | None): Context around each tile; default: two windows, at least 16 pixels.
        pad_to_window (bool): The authors' window padding (fixed-scale networks with windows).
        self_ensemble (bool): Average over the 8 flips/transposes of the input (x8 ensemble).
        out_size (tuple[int, int] | None): Output ``(H, W)`` of an arbitrary-scale network; default:
            ``round(h * scale) x round(w * scale)``.
        query_chunk (int): Output pixels per head pass of an arbitrary-scale network.
        clip_cell (bool): Cell clipping beyond the training scales (arbitrary-scale networks).
        progress (Callable | None): Called as ``progress(done, total)`` after each tile.

    Returns:
        Tensor: The output batch (arbitrary-scale outputs clamped to [0, 1], as the authors evaluate).

    Raises:
        ValueError: A negative ``tile``/``tile_pad``, or no scale to upscale by.
    """
    tile, tile_pad = tiling_for(network, tile, tile_pad)
    scale = network_scale(network) if scale is None else scale
    bare = bare_network(network)
    if is_arbitrary_scale(bare):
        if out_size is None and scale is None:
            raise ValueError('an arbitrary-scale network needs a scale or an output size')
        run = partial(_arbitrary_scale_forward, bare, out_size=out_size, scale=scale, chunk_size=query_chunk,
                      tile_size=tile, tile_pad=tile_pad, clip_cell=clip_cell)
    elif scale is None:
        raise ValueError(f'{type(bare).__name__} does not say its scale: pass scale')
    else:
        run = partial(_fixed_scale_forward, network, scale=scale, tile=tile, tile_pad=tile_pad,
                      window=network_window(network) if pad_to_window else 1)
    if not self_ensemble:
        return run(lr, False, progress=progress)
    views = iter(range(8))
    return average_over_views(lambda view, transposed: run(view, transposed, progress=_view_progress(
        progress, next(views))), lr)


def _fixed_scale_forward(network: nn.Module, view: Tensor, transposed: bool, *, scale: int, tile: int | None,
                         tile_pad: int, window: int, progress: Progress | None = None) -> Tensor:
    forward = partial(tiled_forward, network, scale=scale, tile_size=tile, tile_pad=tile_pad, progress=progress)
    return forward_padded_to_window(forward, view, window, scale) if window > 1 else forward(view)


def _arbitrary_scale_forward(bare: nn.Module, view: Tensor, transposed: bool, *, out_size: tuple[int, int] | None,
                             scale: float, progress: Progress | None = None, **options: object) -> Tensor:
    if out_size is None:
        size = output_size(*view.shape[-2:], scale)
    else:
        size = tuple(reversed(out_size)) if transposed else tuple(out_size)
    return bare.upscale(view, size, scale=scale, progress=progress, **options)


def _view_progress(progress: Progress | None, index: int) -> Progress | None:
    """Progress over the 8 ensemble views, from the progress of one view's tiles."""
    if progress is None:
        return None
    return lambda done, total: progress(index * total + done, 8 * total)
