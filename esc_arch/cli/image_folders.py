"""What the data preparation commands share: listing image folders, safe outputs, parallel work."""
import os
import multiprocessing

import cv2
from tqdm import tqdm

from esc_arch.cli import CommandError

IMAGE_EXTENSIONS = ('.png', '.bmp', '.jpg', '.jpeg', '.tif', '.tiff', '.webp')


def list_images(folder, option):
    """Sorted names of the image files in ``folder`` (not recursive).

    Args:
        folder (str): The folder.
        option (str): The command-line option that named it, for error messages.
    """
    if not os.path.isdir(folder):
        raise CommandError(f'{option}: folder not found: {folder}')
    names = sorted(name for name in os.listdir(folder)
                   if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith('.'))
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


def read_image(path):
    """Read an image as stored (gray, color or with alpha), raising CommandError if it cannot be decoded."""
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise CommandError(f'cannot read image {path} (corrupt, empty or not an image)')
    return img


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
