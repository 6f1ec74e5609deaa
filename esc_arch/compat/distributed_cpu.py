"""BasicSR's multi-process launchers on machines without CUDA (gloo backend).

basicsr 1.4.2's ``init_dist`` (``--launcher pytorch`` under torchrun, ``--launcher slurm``) pins each
process to a GPU with ``torch.cuda.set_device(rank % torch.cuda.device_count())`` and uses the nccl
backend, so without CUDA it fails (``ZeroDivisionError`` or ``Torch not compiled with CUDA enabled``).
Without CUDA, BasicSR's own initialisers now run with the gloo backend and no device pinning (as if
there were one device); with CUDA nothing changes. ``ESCModel`` wraps its network in
DistributedDataParallel without device ids on CPU.
"""
import functools
from collections.abc import Callable
from typing import Any

import torch

from esc_arch.patching import patched

from .table import patches_for

__all__ = ['gloo_without_cuda', 'no_pinning', 'one_device']


def one_device(original: Callable) -> Callable:
    """``torch.cuda.device_count`` while a launcher initialises without CUDA: one (pretend) device."""
    return lambda: 1


def no_pinning(original: Callable) -> Callable:
    """``torch.cuda.set_device`` while a launcher initialises without CUDA: pinning does nothing."""
    return lambda device: None


def gloo_without_cuda(initialise: Callable) -> Callable:
    """Wrap one of BasicSR's ``_init_dist_*(backend, **kwargs)`` to use gloo when CUDA is unavailable."""

    @functools.wraps(initialise)
    def initialise_anywhere(backend: str, **kwargs: Any) -> Any:
        if torch.cuda.is_available():
            return initialise(backend, **kwargs)
        with patched(*patches_for('within gloo-launcher')):  # one device; pinning a process to it does nothing
            return initialise('gloo', **kwargs)

    return initialise_anywhere

