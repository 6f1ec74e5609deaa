"""Packing images into an LMDB with the layout of BasicSR's ``io_backend: lmdb``.

The layout is that of :func:`basicsr.utils.lmdb_util.make_lmdb_from_imgs`: PNG-encoded images under
keys = file names without extension, and ``meta_info.txt`` (``NAME (H,W,C) COMPRESSION`` per image)
beside ``data.mdb``. ``basicsr make-lmdb`` builds on these functions.
"""
import os
from collections.abc import Callable, Iterable

import lmdb
from tqdm import tqdm

from esc_arch.errors import ESCError
from esc_arch.images import encode_image, read_image

__all__ = ['LMDB_FILES', 'encode_entry', 'lmdb_map_size', 'write_lmdb']

LMDB_FILES = ('data.mdb', 'lock.mdb', 'meta_info.txt')
_COMMIT_EVERY = 5000  # images per LMDB transaction, as BasicSR


def lmdb_map_size(folder: str, names: list[str]) -> int:
    """An upper bound of the size of an LMDB of the images ``names`` in ``folder``.

    BasicSR's default (10x the first image) overflows when later images are larger; re-encoding may grow
    compressed files several times, and each entry takes at least a page. The map is reserved address
    space, not disk space, on Linux.
    """
    input_bytes = sum(os.path.getsize(os.path.join(folder, name)) for name in names)
    return 10 * input_bytes + 64 * 1024 * len(names) + 2**24


def encode_entry(name: str, folder: str, compress_level: int, max_pixels: int,
                 notify: Callable[[str], None] | None = None) -> tuple[bytes, tuple] | str:
    """Read and PNG-encode one image; returns ``(bytes, shape)`` or an error message (picklable for workers).

    Args:
        name (str): The image's file name in ``folder``.
        folder (str): The input folder.
        compress_level (int): PNG compression, 0-9.
        max_pixels (int): Larger images are refused before decoding.
        notify (Callable[[str], None] | None): Receives notices of the reader (e.g. EXIF orientation applied).
    """
    try:
        image = read_image(os.path.join(folder, name), max_pixels=max_pixels, notify=notify)
        return encode_image(image, '.png', png_compression=compress_level), image.shape
    except ESCError as err:
        return str(err)


def write_lmdb(path: str, entries: Iterable[tuple[bytes, tuple] | str], keys: list[str], names: list[str],
               total: int, map_size: int, compress_level: int) -> list[str]:
    """Write ``entries`` (from :func:`encode_entry`) under ``keys`` into a new LMDB at ``path``.

    Returns:
        list[str]: The error messages of the images that failed (their entries are skipped).
    """
    failures = []
    environment = lmdb.open(path, map_size=map_size)
    try:
        transaction = environment.begin(write=True)
        with open(os.path.join(path, 'meta_info.txt'), 'w') as meta_info:
            for index, (entry, key, name) in enumerate(tqdm(zip(entries, keys, names), total=total, unit='image')):
                if isinstance(entry, str):
                    failures.append(entry)
                    continue
                data, shape = entry
                transaction.put(key.encode('ascii'), data)
                height, width, channels = (*shape, 1) if len(shape) == 2 else shape
                meta_info.write(f'{name} ({height},{width},{channels}) {compress_level}\n')
                if (index + 1) % _COMMIT_EVERY == 0:
                    transaction.commit()
                    transaction = environment.begin(write=True)
        transaction.commit()
    finally:
        environment.close()
    return failures
