"""Inference with trained networks: loading weights, choosing device and precision, whole-image and tiled upscaling.

The ``basicsr upscale`` and ``basicsr export-onnx`` commands are thin layers over these functions::

    from esc_arch.inference import compile_network, load_network, upscale_image

    network, scale = load_network('ESC', 'ESC_x4.pth')
    network, compiled = compile_network(network)  # optional: torch.compile; eager (with a notice) where unavailable
    output = upscale_image(network, image, scale, tile=256)  # image: an OpenCV array, uint8/uint16/float32
"""
from .compilation import compile_network
from .loading import PRECISIONS, load_network, select_device
from .tiling import tiled_forward
from .upscaling import upscale_image

__all__ = ['PRECISIONS', 'compile_network', 'load_network', 'select_device', 'tiled_forward', 'upscale_image']
