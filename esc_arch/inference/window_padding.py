"""The authors' test-time padding: run a windowed network on an LR image padded to whole windows."""
from collections.abc import Callable

from torch import Tensor

from esc_arch.archs.layers import mirror_pad


def forward_padded_to_window(network: Callable[[Tensor], Tensor], lr: Tensor, window_size: int,
                             scale: int) -> Tensor:
    """Reflect-pad ``lr`` at the bottom and right to multiples of ``window_size``, run ``network``, crop.

    This is how the ESC authors' model classes test (and how the published tables were made): the
    network sees a reflected border rather than padding itself inside each attention layer, and
    ConvAttn's dynamic kernels average over the padded image, so the output differs slightly
    from feeding ``lr`` as it is. Images smaller than half a window are mirrored again
    (:func:`~esc_arch.archs.layers.mirror_pad`), where plain reflect padding would fail.

    Args:
        network (Callable): Maps ``(N, C, h, w)`` to ``(N, C_out, h*scale, w*scale)``.
        lr (Tensor): Input batch ``(N, C, H, W)``.
        window_size (int): Pad height and width up to multiples of this.
        scale (int): Upscaling factor of ``network``.

    Returns:
        Tensor: The top-left ``(H*scale, W*scale)`` of the output for the padded input.
    """
    height, width = lr.shape[-2:]
    padded = mirror_pad(lr, (0, -width % window_size, 0, -height % window_size))
    return network(padded)[..., :height * scale, :width * scale]
