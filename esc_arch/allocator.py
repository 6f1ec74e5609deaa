"""Keep freed memory in the process (glibc): the allocator policy of the inference commands.

glibc's ``malloc`` serves a large block with a fresh ``mmap`` and hands the pages back to the
kernel when the block is freed; it also trims the top of its heap once enough of it is free. Every
such block is then faulted in again, page by page, at its next use. An ESC forward on CPU allocates
and frees tensors of 10 to 30 MiB layer after layer: at 1280x720 output, ESC x4 eager took 72,000
page faults per forward and 1.48 s on an AVX-512 EPYC (2 threads), none and 1.43 s with freed memory
kept; the authors' explicit attention, whose score tensors are about 1 GiB, took 3.8 million faults
and 5.6 s, none and 2.0 s kept (``BENCHMARKS.md``, the
``cpu-machine`` section, which measures both settings).

:func:`keep_freed_memory` raises the mmap threshold so that blocks below 1 GiB come from the heap,
and turns trimming off, so that freed blocks stay there for the next call. The process's resident
memory then stays at its peak instead of shrinking between calls. It is applied by
``basicsr upscale`` and ``basicsr test``; library users may call it, or start Python with
``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` set (glibc reads them at start-up).
"""
import ctypes
import ctypes.util
import os
import platform

__all__ = ['KEPT_BLOCK_BYTES', 'keep_freed_memory']

KEPT_BLOCK_BYTES = 1 << 30
"""Blocks below this size come from the heap (where glibc accepts it; some versions cap it at 32 MiB)."""

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, <malloc.h>
_GLIBC_MMAP_THRESHOLD_MAX = 32 << 20  # DEFAULT_MMAP_THRESHOLD_MAX on 64-bit systems
_NEVER_TRIM = -1  # glibc's mallopt(3): a trim threshold of -1 turns trimming off
_USER_SETTINGS = ('MALLOC_MMAP_THRESHOLD_', 'MALLOC_TRIM_THRESHOLD_', 'GLIBC_TUNABLES')


def keep_freed_memory(block_bytes: int = KEPT_BLOCK_BYTES) -> str:
    """Make glibc serve blocks below ``block_bytes`` from its heap and never hand freed heap memory back.

    Args:
        block_bytes (int): The mmap threshold. Default: :data:`KEPT_BLOCK_BYTES` (1 GiB); where glibc
            refuses it, 32 MiB, the largest every 64-bit glibc accepts.

    Returns:
        str: ``applied``, or why not (not glibc; the user's own
        malloc settings in the environment, which win; ``mallopt`` refused).
    """
    if platform.libc_ver()[0] != 'glibc':
        return 'not applied: the C library is not glibc'
    user = [name for name in _USER_SETTINGS if name in os.environ]
    if user:
        return f'not applied: {user[0]} is set in the environment'
    libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
    threshold_set = (libc.mallopt(_M_MMAP_THRESHOLD, block_bytes)
                     or libc.mallopt(_M_MMAP_THRESHOLD, min(block_bytes, _GLIBC_MMAP_THRESHOLD_MAX)))
    if not (threshold_set and libc.mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM)):
        return 'not applied: mallopt refused the thresholds'
    return 'applied'
