"""Reading and writing image files safely, for every command that handles images.

Files from users may be hostile or careless, so :func:`read_image`

- reads the declared size from the file's header (Pillow reads only the header) and refuses an
  image of more than ``max_pixels`` pixels *before* decoding it (a 4 KB PNG can declare
  60000x60000 pixels, 10 GB once decoded). Default: :data:`DEFAULT_MAX_PIXELS`;
- applies the EXIF orientation, as OpenCV's ``IMREAD_COLOR`` (and so BasicSR's training and
  testing) does, also when the image is read as stored;
- refuses pixel types and layouts the commands cannot handle, and float images with NaN/inf
  values (they would silently turn the whole result into NaN);
- reports (through ``notify``) that only the first frame of an animated or multi-page file is used.

:func:`write_image` writes to a hidden temporary file and renames it, so an output appears only
complete, and a failed write (full disk, read-only folder, interruption) leaves no partial file.
Every problem is raised as :class:`~esc_arch.errors.ImageError` or
:class:`~esc_arch.errors.OutputError` with a one-line message naming the file.
"""
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Union

import cv2
import numpy as np
from PIL import Image, TiffImagePlugin

from esc_arch.errors import ImageError, OutputError
from esc_arch.files import atomic_write_bytes

__all__ = [
    'IMAGE_EXTENSIONS', 'PIXEL_TYPES', 'DEFAULT_MAX_PIXELS', 'ImageHeader', 'list_images', 'read_header',
    'read_image', 'encode_image', 'write_image', 'new_output_folder'
]

PathLike = Union[str, os.PathLike]

IMAGE_EXTENSIONS = ('.png', '.bmp', '.jpg', '.jpeg', '.tif', '.tiff', '.webp')
# Pixel types the commands handle (OpenCV also decodes e.g. int16 or float64 TIFFs).
PIXEL_TYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
DEFAULT_MAX_PIXELS = 178_956_970
"""Largest image read by default (about 13,400 x 13,400; Pillow's decompression-bomb limit): 2 GB as
float32 RGB, before the network's activations. Commands change it with ``--max-pixels``."""

_EXIF_ORIENTATION_TAG = 0x0112
_TIFF_WIDTH_TAG, _TIFF_HEIGHT_TAG = 256, 257
_GRAY_ALPHA_MODES = ('LA', 'La')


@dataclass(frozen=True)
class ImageHeader:
    """What an image file declares before its pixels are decoded.

    Attributes:
        width (int): Stored width in pixels.
        height (int): Stored height in pixels.
        frames (int): Frames or pages (animated PNG/WebP, multi-page TIFF); 1 for a still image.
        mode (str | None): Pillow's pixel mode ('RGB', 'LA', ...); None when only the size is known.
        orientation (int): EXIF orientation (1: as stored; 2-8: flipped and/or turned).
    """
    width: int
    height: int
    frames: int = 1
    mode: Optional[str] = None
    orientation: int = 1

    def __post_init__(self) -> None:
        if self.orientation not in range(1, 9):  # unknown values are ignored, as OpenCV does
            object.__setattr__(self, 'orientation', 1)

    @property
    def pixels(self) -> int:
        return self.width * self.height


def list_images(folder: PathLike, option: str) -> List[str]:
    """Sorted names of the image files in ``folder`` (not recursive; hidden files skipped).

    Args:
        folder (str | os.PathLike): The folder.
        option (str): The command-line option that named it, for error messages.

    Raises:
        ImageError: The folder does not exist or holds no images.
    """
    if not os.path.isdir(folder):
        raise ImageError(f'{option}: folder not found: {folder}')
    names = sorted(name for name in os.listdir(folder)
                   if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith('.')
                   and os.path.isfile(os.path.join(folder, name)))
    if not names:
        raise ImageError(f'{option}: no images ({", ".join(IMAGE_EXTENSIONS)}) in {folder}')
    return names


def read_header(data: bytes) -> Optional[ImageHeader]:
    """Read an image's size, frames, mode and EXIF orientation from its encoded bytes, decoding no pixels.

    Args:
        data (bytes): The file's contents.

    Returns:
        ImageHeader | None: None when the format is not one Pillow knows (OpenCV may still decode it).
    """
    previous_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # the caller compares the size with its own limit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # Pillow's notices about damaged headers: the caller reports problems
            try:
                with Image.open(io.BytesIO(data)) as image:
                    width, height = image.size
                    frames = _optional(lambda: getattr(image, 'n_frames', 1), 1)
                    orientation = _optional(lambda: image.getexif().get(_EXIF_ORIENTATION_TAG, 1), 1)
                    return ImageHeader(width, height, frames, image.mode, orientation)
            except Exception:  # noqa: BLE001 (hostile files make Pillow raise almost anything)
                return _read_tiff_size(data)  # Pillow has no mode for e.g. 3-channel float32 TIFFs (OpenCV writes them)
    finally:
        Image.MAX_IMAGE_PIXELS = previous_limit


def _optional(read: Callable[[], object], default: object) -> object:
    """``read()``, or ``default`` when a damaged header makes it fail (the pixels may still decode)."""
    try:
        return read()
    except Exception:  # noqa: BLE001
        return default


def _read_tiff_size(data: bytes) -> tuple[int, int] | None:
    if data[:4] not in (b'II*\0', b'MM\0*'):
        return None
    try:
        directory = TiffImagePlugin.ImageFileDirectory_v2(data[:8])
        stream = io.BytesIO(data)
        stream.seek(directory.next)
        directory.load(stream)
        return ImageHeader(int(directory[_TIFF_WIDTH_TAG]), int(directory[_TIFF_HEIGHT_TAG]))
    except Exception:  # noqa: BLE001 (a damaged header: OpenCV decides)
        return None


def _too_large(path: Union[str, Path], width: int, height: int, max_pixels: int) -> ImageError:
    return ImageError(f'{path} is {width}x{height} pixels, more than the limit of {max_pixels:,} '
                      '(raise it with --max-pixels if the image is genuine)')


def _apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Turn/flip an image stored with EXIF ``orientation`` to how it is displayed (as OpenCV's IMREAD_COLOR)."""
    if orientation in (5, 6, 7, 8):  # stored transposed: swap the axes first
        image = np.swapaxes(image, 0, 1)
    if orientation in (2, 3, 6, 7):
        image = image[:, ::-1]
    if orientation in (3, 4, 7, 8):
        image = image[::-1]
    return np.ascontiguousarray(image)


def read_image(path: PathLike, color: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS,
               notify: Optional[Callable[[str], None]] = None) -> np.ndarray:
    """Read an image file safely (see the module's docstring).

    Args:
        path (str | os.PathLike): The image file (any name: read as bytes, then decoded).
        color (bool): Return 8-bit BGR whatever is stored (gray expanded, alpha dropped, 16-bit
            scaled down), as BasicSR reads training images. Default: False, the image as stored:
            HxW gray, HxWx2 gray+alpha, HxWx3 BGR or HxWx4 BGRA; uint8, uint16 or float32.
        max_pixels (int): Refuse images with more pixels than this, before decoding them.
            Default: :data:`DEFAULT_MAX_PIXELS`.
        notify (Callable[[str], None] | None): Receives one-line notices (only the first frame of an
            animation is used). Default: None, issue them as warnings.

    Returns:
        ndarray: The image, turned as its EXIF orientation says.

    Raises:
        ImageError: The file cannot be read or decoded, is too large, or holds an unsupported pixel
            type, layout or non-finite values.
    """
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise ImageError(f'cannot read {path}: {err.strerror}') from None
    header = read_header(data.tobytes()) if data.size else None
    if header and header.pixels > max_pixels:
        raise _too_large(path, header.width, header.height, max_pixels)
    if header and header.frames > 1:
        (notify or warnings.warn)(f'{path} has {header.frames} frames; only the first is used')
    image = _decode(data, cv2.IMREAD_COLOR if color else cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise ImageError(f'cannot decode image {path} (empty, corrupt or not an image)')
    if header is None and image.shape[0] * image.shape[1] > max_pixels:  # no header to check before decoding
        raise _too_large(path, image.shape[1], image.shape[0], max_pixels)
    _check_pixels(image, path)
    if color:
        return image  # IMREAD_COLOR has applied the EXIF orientation
    if header and header.mode in _GRAY_ALPHA_MODES and image.ndim == 3 and image.shape[2] == 4:
        image = image[..., [0, 3]]  # OpenCV expands gray+alpha to BGRA
    if header and header.orientation != 1:
        image = _apply_orientation(image, header.orientation)
    return image


def _check_pixels(image: np.ndarray, path: Union[str, Path]) -> None:
    """Refuse pixel types and layouts the commands cannot handle, and non-finite float values."""
    if image.dtype not in PIXEL_TYPES:
        raise ImageError(f'{path} has {image.dtype} pixels; supported: 8-bit, 16-bit and float32')
    if image.ndim == 3 and image.shape[2] not in (1, 3, 4):
        raise ImageError(f'{path} has {image.shape[2]} channels; supported: 1 (gray), 3 (colour), 4 (with alpha)')
    if image.dtype == np.float32 and not np.isfinite(image).all():
        count = int(np.count_nonzero(~np.isfinite(image)))
        raise ImageError(f'{path} has {count} NaN/inf pixel value(s); replace them with finite values first')


def _decode(data: np.ndarray, flags: int) -> np.ndarray | None:
    """``cv2.imdecode`` without OpenCV's own log lines about corrupt files (the caller reports them in one line)."""
    log_level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        return cv2.imdecode(data, flags)
    except cv2.error:
        return None  # OpenCV raises instead of returning None for some corrupt files
    finally:
        cv2.utils.logging.setLogLevel(log_level)


def encode_image(image: np.ndarray, extension: str, png_compression: int = 3) -> bytes:
    """Encode an image as ``extension`` ('.png', ...); PNG with compression 3 by default, as BasicSR's scripts.

    An HxWx2 (gray+alpha) 8-bit image is written as a gray+alpha PNG; other formats, and 16-bit
    gray+alpha (which Pillow cannot write), get BGRA.

    Raises:
        OutputError: The format cannot hold this image.
    """
    if image.ndim == 3 and image.shape[2] == 2:
        if extension.lower() == '.png' and image.dtype == np.uint8:
            buffer = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(image), 'LA').save(buffer, format='PNG',
                                                                     compress_level=png_compression)
            return buffer.getvalue()
        image = image[..., [0, 0, 0, 1]]
    parameters = [cv2.IMWRITE_PNG_COMPRESSION, png_compression] if extension.lower() == '.png' else []
    try:
        encoded, data = cv2.imencode(extension, image, parameters)
    except cv2.error:
        encoded = False
    if not encoded:
        raise OutputError(f'cannot encode a {image.dtype} image with {image.shape[-1] if image.ndim == 3 else 1} '
                          f'channel(s) as {extension}')
    return data.tobytes()


def write_image(image: np.ndarray, path: PathLike) -> None:
    """Write ``image`` in the format of ``path``'s extension, atomically (:func:`esc_arch.files.atomic_write_bytes`).

    The file is written as ``.NAME.PID.part`` beside ``path``, flushed to disk and renamed when complete;
    on any failure (or an interruption) the temporary file is removed and an existing ``path`` is kept.

    Raises:
        OutputError: The image cannot be encoded in that format, or the file cannot be written
            (read-only folder, full disk, ...).
    """
    path = Path(path)
    try:
        data = encode_image(image, path.suffix)
    except OutputError as err:
        raise OutputError(f'{path}: {err}') from None
    atomic_write_bytes(path, data)


def new_output_folder(folder: PathLike, option: str) -> None:
    """Create ``folder`` for results, refusing one that already holds files (nothing is overwritten).

    Raises:
        OutputError: ``folder`` is a file, is not empty, or cannot be created.
    """
    if os.path.isdir(folder) and os.listdir(folder):
        raise OutputError(f'{option}: {folder} already exists and is not empty; choose another folder or remove it')
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise OutputError(f'{option}: {folder} exists and is not a folder')
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise OutputError(f'{option}: cannot create {folder}: {err.strerror or err}') from None
