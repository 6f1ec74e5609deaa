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

import torch

from .patching import Patch, patched

__all__ = ['PATCHES', 'gloo_without_cuda']

# While a launcher initialises without CUDA: one device, and pinning a process to it does nothing.
_ONE_PRETEND_CUDA_DEVICE = (
    Patch(name='pretend-cuda-device-count', target='torch.cuda:device_count', replacement=lambda original: lambda: 1,
          reason='basicsr divides the rank by the device count', versions='basicsr 1.4.2'),
    Patch(name='pretend-cuda-set-device', target='torch.cuda:set_device',
          replacement=lambda original: lambda device: None,
          reason='basicsr pins every process to a CUDA device', versions='basicsr 1.4.2'),
)


def gloo_without_cuda(initialise: Callable) -> Callable:
    """Wrap one of BasicSR's ``_init_dist_*(backend, **kwargs)`` to use gloo when CUDA is unavailable."""

    @functools.wraps(initialise)
    def initialise_anywhere(backend, **kwargs):
        if torch.cuda.is_available():
            return initialise(backend, **kwargs)
        with patched(*_ONE_PRETEND_CUDA_DEVICE):
            return initialise('gloo', **kwargs)

    return initialise_anywhere


PATCHES = tuple(
    Patch(name=f'gloo-launcher-{launcher}',
          target=f'basicsr.utils.dist_util:_init_dist_{launcher}',
          replacement=gloo_without_cuda,
          reason=f'--launcher {launcher} pins each process to a CUDA device and uses nccl, which fails without CUDA',
          versions='basicsr 1.4.2')
    for launcher in ('pytorch', 'slurm'))
