"""What the image commands share: listing and reading images, safe outputs, parallel work."""
import os
import multiprocessing

import cv2
import numpy as np
from tqdm import tqdm

from esc_arch.cli import CommandError

IMAGE_EXTENSIONS = ('.png', '.bmp', '.jpg', '.jpeg', '.tif', '.tiff', '.webp')
# Pixel types the commands handle (OpenCV also decodes e.g. int16 or float64 TIFFs).
PIXEL_TYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))


def list_images(folder, option):
    """Sorted names of the image files in ``folder`` (not recursive; hidden files skipped).

    Args:
        folder (str | os.PathLike): The folder.
        option (str): The command-line option that named it, for error messages.
    """
    if not os.path.isdir(folder):
        raise CommandError(f'{option}: folder not found: {folder}')
    names = sorted(name for name in os.listdir(folder)
                   if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith('.')
                   and os.path.isfile(os.path.join(folder, name)))
    if not names:
        raise CommandError(f'{option}: no images ({", ".join(IMAGE_EXTENSIONS)}) in {folder}')
    return names


def new_output_folder(folder, option):
    """Create ``folder`` for results, refusing one that already holds files (nothing is overwritten)."""
    if os.path.isdir(folder) and os.listdir(folder):
        raise CommandError(f'{option}: {folder} already exists and is not empty; choose another folder or remove it')
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise CommandError(f'{option}: {folder} exists and is not a folder')
    os.makedirs(folder, exist_ok=True)


def read_image(path, color=False):
    """Read an image file, raising CommandError (one line) if it cannot be read or is of an unsupported kind.

    Args:
        path (str | os.PathLike): The image file (any name: read as bytes, then decoded).
        color (bool): Return 8-bit BGR whatever is stored (gray expanded, alpha dropped, 16-bit
            scaled down). Default: False, the image as stored: HxW gray, HxWx3 BGR or HxWx4 BGRA;
            uint8, uint16 or float32.

    Returns:
        ndarray: The image.
    """
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise CommandError(f'cannot read {path}: {err.strerror}') from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR if color else cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise CommandError(f'cannot decode image {path} (empty, corrupt or not an image)')
    if image.dtype not in PIXEL_TYPES:
        raise CommandError(f'{path} has {image.dtype} pixels; supported: 8-bit, 16-bit and float32')
    if image.ndim == 3 and image.shape[2] not in (1, 3, 4):
        raise CommandError(f'{path} has {image.shape[2]} channels; supported: 1 (gray), 3 (colour), 4 (with alpha)')
    return image


def write_image(img, path):
    """Write ``img`` (PNG compression 3, as BasicSR's scripts), raising CommandError on failure."""
    if not cv2.imwrite(path, img, [cv2.IMWRITE_PNG_COMPRESSION, 3]):
        raise CommandError(f'cannot write {path}')


def run_parallel(function, items, workers, unit='image'):
    """Call ``function`` on every item, in ``workers`` processes (1: in this one), with a progress bar."""
    with tqdm(total=len(items), unit=unit) as progress:
        if workers <= 1:
            for item in items:
                function(item)
                progress.update()
        else:
            # Spawned, not forked: a fork of a process whose torch thread pool has run can deadlock.
            with multiprocessing.get_context('spawn').Pool(workers) as pool:
                for _ in pool.imap_unordered(function, items):
                    progress.update()


def add_workers_argument(parser):
    """The ``--workers`` option of the commands that use :func:`run_parallel`."""
    parser.add_argument('--workers', type=int, default=os.cpu_count() or 1,
                        help='processes working in parallel (default: one per CPU core)')
