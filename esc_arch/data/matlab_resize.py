"""MATLAB ``imresize(..., 'bicubic')`` for batches of images, on any device.

The SR benchmarks were made with MATLAB: ``LR = imresize(modcrop(HR, s), 1/s, 'bicubic')`` on uint8
images. basicsr's :func:`basicsr.utils.matlab_functions.imresize` computes the same interpolation
weights, but loops over rows and channels of one CPU image. Here those weights (taken from basicsr's
``calculate_weights_indices``) become one dense matrix per axis, so a resize is two matrix products
that run batched on the tensor's device.
"""
import math

import numpy as np
import torch

from basicsr.utils.matlab_functions import calculate_weights_indices

__all__ = ['bicubic_downsample', 'matlab_imresize']

_KERNEL_WIDTH = 4  # cubic kernel support (a = -0.5), in input pixels


def _resize_matrix(in_length: int, scale: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The ``(out_length, in_length)`` matrix of one axis, MATLAB's symmetric border folded in."""
    out_length = math.ceil(in_length * scale)
    weights, indices, sym_len_start, _ = calculate_weights_indices(
        in_length, out_length, scale, 'cubic', _KERNEL_WIDTH, antialiasing=True)
    # basicsr indexes a copy padded by sym_len_start mirrored pixels; map back into the image,
    # mirroring with edge repetition (MATLAB's 'symmetric') as often as needed for tiny inputs.
    source = (indices.long() - sym_len_start) % (2 * in_length)
    source = torch.where(source >= in_length, 2 * in_length - 1 - source, source)
    matrix = torch.zeros(out_length, in_length, dtype=torch.float64)
    matrix.scatter_add_(1, source, weights.double())
    return matrix.to(dtype=dtype, device=device)


def _to_uint8_levels(images: torch.Tensor) -> torch.Tensor:
    # MATLAB rounds half away from zero and saturates when it stores uint8. Integer-valued
    # work values keep the many exact halves (x2, x4 weights are dyadic) exact.
    return torch.floor(images.clamp(0, 255) + 0.5)


def matlab_imresize(images: torch.Tensor, scale: float, quantize: bool = False) -> torch.Tensor:
    """Resize like MATLAB ``imresize(images, scale, 'bicubic')`` (antialiased when shrinking).

    Args:
        images (Tensor): ``(..., H, W)`` float images, values in [0, 1] for uint8 data.
        scale (float): Resize factor for both axes (e.g. 4 to upsample, 1/4 to downsample).
            The output is ``ceil(H * scale) x ceil(W * scale)``.
        quantize (bool): Emulate MATLAB on a uint8 image: round to the 256 levels after the
            height pass and after the width pass, as MATLAB stores each pass in the input's class
            (the input is rounded to the 256 levels first).
            With it, downsampling a uint8 HR image reproduces the benchmark LR files exactly.
            Default: False (float result, like basicsr's ``imresize``).

    Returns:
        Tensor: The resized images, same dtype and device as ``images``.
    """
    height, width = images.shape[-2:]
    # float64 keeps the result independent of summation order; MATLAB computes in double.
    work_dtype = torch.float32 if images.device.type == 'mps' else torch.float64
    resize_h = _resize_matrix(height, scale, work_dtype, images.device)
    resize_w = _resize_matrix(width, scale, work_dtype, images.device)
    if not quantize:
        return (resize_h @ images.to(work_dtype) @ resize_w.T).to(images.dtype)
    levels = _to_uint8_levels(images.to(work_dtype) * 255)
    levels = _to_uint8_levels(resize_h @ levels)
    levels = _to_uint8_levels(levels @ resize_w.T)
    return (levels / 255).to(images.dtype)


def bicubic_downsample(img: np.ndarray, scale: int) -> np.ndarray:
    """MATLAB ``imresize(img, 1/scale, 'bicubic')`` of a uint8 image, as the benchmarks' LR files hold.

    Args:
        img (ndarray): uint8 image, ``(H, W)`` or ``(H, W, C)``; H and W multiples of ``scale`` (modcrop).
        scale (int): Downsampling factor.

    Returns:
        ndarray: float32 image in [0, 1] with the same layout, on the 256 uint8 levels.
    """
    if img.dtype != np.uint8:
        raise ValueError(f'bicubic_downsample needs an 8-bit image; got {img.dtype}')
    hr = torch.from_numpy(np.ascontiguousarray(img)).double() / 255
    channels_last = img.ndim == 3
    lr = matlab_imresize(hr.movedim(-1, 0) if channels_last else hr, 1 / scale, quantize=True)
    return (lr.movedim(0, -1) if channels_last else lr).float().contiguous().numpy()
