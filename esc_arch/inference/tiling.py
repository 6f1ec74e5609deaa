"""Tiled inference: upscale an image in overlapping pieces so that memory stays bounded."""
from collections.abc import Callable

from torch import Tensor


def tiled_forward(network: Callable[[Tensor], Tensor], lr: Tensor, scale: int, tile_size: int | None,
                  tile_pad: int, progress: Callable[[int, int], None] | None = None) -> Tensor:
    """Run ``network`` on ``lr`` tile by tile and stitch the results.

    Each tile of ``tile_size`` x ``tile_size`` LR pixels is processed with ``tile_pad`` pixels of
    context on every side that the image has, and only its centre is kept, so seams vanish
    once ``tile_pad`` covers the network's receptive field near the tile border.

    Args:
        network (Callable): Maps an ``(N, C, h, w)`` tensor to ``(N, C_out, h*scale, w*scale)``.
        lr (Tensor): Input batch ``(N, C, H, W)``.
        scale (int): Upscaling factor of ``network``.
        tile_size (int | None): Side of a tile in LR pixels; ``None``/0 or a tile covering the
            whole image runs ``network`` once on the whole image.
        tile_pad (int): Context around each tile, in LR pixels (the test-time default, window-aligned
            tiles and window padding are :func:`~esc_arch.inference.forward.forward_image`'s).
        progress (Callable | None): Called as ``progress(done, total)`` after each tile.

    Returns:
        Tensor: The ``(N, C_out, H*scale, W*scale)`` output.
    """
    height, width = lr.shape[-2:]
    if not tile_size or (tile_size >= height and tile_size >= width):
        return network(lr)
    if tile_size < 0 or tile_pad < 0:
        raise ValueError(f'tile_size and tile_pad must be non-negative; got {tile_size} and {tile_pad}')
    corners = [(top, left) for top in range(0, height, tile_size) for left in range(0, width, tile_size)]
    output = None
    for done, (top, left) in enumerate(corners, 1):
        bottom, right = min(top + tile_size, height), min(left + tile_size, width)
        in_top, in_left = max(top - tile_pad, 0), max(left - tile_pad, 0)
        in_bottom, in_right = min(bottom + tile_pad, height), min(right + tile_pad, width)
        tile = network(lr[..., in_top:in_bottom, in_left:in_right])
        if output is None:
            output = tile.new_empty(*tile.shape[:-2], height * scale, width * scale)
        output[..., top * scale:bottom * scale, left * scale:right * scale] = tile[
            ..., (top - in_top) * scale:(bottom - in_top) * scale, (left - in_left) * scale:(right - in_left) * scale]
        if progress is not None:
            progress(done, len(corners))
    return output
