"""Upscale one image array as it was read from a file: any layout (gray, BGR, BGRA) and depth (8, 16 bits, float)."""
import cv2
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from esc_arch.errors import ESCError, ImageError

from basicsr.utils.img_util import img2tensor, tensor2img

from .forward import forward_image

__all__ = ['upscale_image']

_PIXEL_MAX = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0, np.dtype(np.float32): 1.0}


@torch.inference_mode()
def upscale_image(network: nn.Module, image: np.ndarray, scale: float, tile: int = 0, tile_pad: int | None = None,
                  *, pad_to_window: bool = True, self_ensemble: bool = False) -> np.ndarray:
    """Upscale an OpenCV image array (BGR/BGRA/gray, uint8/uint16/float32), keeping its layout and depth.

    Grayscale images are upscaled as RGB and returned as grayscale (BT.601 luma); an alpha channel is
    upscaled separately with bicubic interpolation (also that of a gray+alpha image).

    Args:
        network (nn.Module): Super-resolution network (RGB in [0, 1]).
        image (ndarray): HxW, HxWx1, HxWx2 (gray+alpha), HxWx3 (BGR) or HxWx4 (BGRA) array.
        scale (float): The network's upscaling factor; any positive number for an arbitrary-scale network
            (ESC-LTE), whose output is ``round(h * scale) x round(w * scale)``.
        tile, tile_pad, pad_to_window, self_ensemble: As :func:`~esc_arch.inference.forward.forward_image`
            (whose module documents the defaults): tiles and context in input pixels, rounded up to whole
            windows; the authors' window padding; the x8 ensemble.

    Returns:
        ndarray: The upscaled image, same dtype and channel layout.

    Raises:
        ImageError: The device ran out of memory (a smaller ``tile`` helps).
        ESCError: The network's precision (fp16/bf16) is not supported on its device.
    """
    if image.ndim == 3 and image.shape[2] == 2:  # gray+alpha: as BGRA, the color part back to luma
        result = upscale_image(network, image[..., [0, 0, 0, 1]], scale, tile, tile_pad, pad_to_window=pad_to_window,
                               self_ensemble=self_ensemble)
        return np.dstack([cv2.cvtColor(result[..., :3], cv2.COLOR_BGR2GRAY), result[..., 3]])
    pixel_max = _PIXEL_MAX[image.dtype]
    pixels = image.astype(np.float32) / pixel_max
    gray = pixels.ndim == 2 or pixels.shape[2] == 1
    alpha = pixels[..., 3] if not gray and pixels.shape[2] == 4 else None
    color = cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR) if gray else pixels[..., :3]

    parameter = next(network.parameters())
    lr = img2tensor(np.ascontiguousarray(color)).unsqueeze(0).to(parameter.device, parameter.dtype)
    with tqdm(desc='tiles', unit='tile', leave=False, disable=None if tile else True) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        try:
            sr = forward_image(network, lr, scale=scale, tile=tile, tile_pad=tile_pad, pad_to_window=pad_to_window,
                               self_ensemble=self_ensemble, progress=progress)
        except torch.cuda.OutOfMemoryError:
            raise ImageError(f'out of memory on {parameter.device.type}: use a smaller --tile') from None
        except RuntimeError as err:
            if parameter.dtype == torch.float32:
                raise
            raise ESCError(f'{parameter.dtype} inference failed on {parameter.device.type} '
                           f'({str(err).splitlines()[0]}); use --precision fp32') from None
    result = tensor2img(sr, rgb2bgr=True, out_type=np.float32)
    if gray:
        result = cv2.cvtColor(result, cv2.COLOR_BGR2GRAY)
    if alpha is not None:
        height, width = result.shape[:2]
        upscaled_alpha = cv2.resize(alpha, (width, height), interpolation=cv2.INTER_CUBIC)
        result = np.dstack([result, np.clip(upscaled_alpha, 0, 1)])
    if image.dtype == np.float32:
        return result
    return np.round(result * pixel_max).astype(image.dtype)
