"""Inference with trained networks: loading weights, choosing device and precision, whole-image and tiled upscaling.

The ``basicsr upscale`` and ``basicsr export-onnx`` commands are thin layers over these functions::

    from esc_arch.inference import compile_network, forward_image, load_network, upscale_image

    network, scale = load_network('ESC', 'ESC_x4.pth')
    network, compiled = compile_network(network)  # optional: torch.compile; eager (with a notice) where unavailable
    output = upscale_image(network, image, scale, tile=256)  # image: an OpenCV array, uint8/uint16/float32
    sr = forward_image(network, lr_tensor)  # the same forward on an (N, 3, h, w) tensor in [0, 1]
"""
from .compilation import compile_network
from .forward import forward_image
from .loading import PRECISIONS, load_network, select_device
from .tiling import tiled_forward
from .upscaling import upscale_image

__all__ = ['PRECISIONS', 'compile_network', 'forward_image', 'load_network', 'select_device', 'tiled_forward',
           'upscale_image']
