"""BasicSR's multi-process launchers on machines without CUDA (gloo backend).

basicsr 1.4.2's ``init_dist`` (``--launcher pytorch`` under torchrun, ``--launcher slurm``) pins each
process to a GPU with ``torch.cuda.set_device(rank % torch.cuda.device_count())`` and uses the nccl
backend, so without CUDA it fails (``ZeroDivisionError`` or ``Torch not compiled with CUDA enabled``).
Without CUDA, BasicSR's own initialisers now run with the gloo backend and no device pinning (as if
there were one device); with CUDA nothing changes. ``ESCModel`` wraps its network in
DistributedDataParallel without device ids on CPU.
"""
import contextlib
import functools

import torch

INITIALISERS = ('_init_dist_pytorch', '_init_dist_slurm')


@contextlib.contextmanager
def _one_pretend_cuda_device():
    saved = torch.cuda.device_count, torch.cuda.set_device
    torch.cuda.device_count, torch.cuda.set_device = (lambda: 1), (lambda device: None)
    try:
        yield
    finally:
        torch.cuda.device_count, torch.cuda.set_device = saved


def gloo_without_cuda(initialise):
    """Wrap one of BasicSR's ``_init_dist_*(backend, **kwargs)`` to use gloo when CUDA is unavailable."""

    @functools.wraps(initialise)
    def initialise_anywhere(backend, **kwargs):
        if torch.cuda.is_available():
            return initialise(backend, **kwargs)
        with _one_pretend_cuda_device():
            return initialise('gloo', **kwargs)

    initialise_anywhere.gloo_without_cuda = True
    return initialise_anywhere


def apply():
    from basicsr.utils import dist_util

    for name in INITIALISERS:
        initialise = getattr(dist_util, name)
        if not getattr(initialise, 'gloo_without_cuda', False):
            setattr(dist_util, name, gloo_without_cuda(initialise))
