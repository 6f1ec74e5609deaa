"""How many threads torch, OpenMP and OpenCV use: one policy for the commands and their data-loader workers.

Left alone, each process sizes its thread pools to the machine and OpenMP threads spin while they wait
for each other. On a machine whose cores other programs keep busy, a spinning thread burns the time
slice its partner needs: ``basicsr demo``, 3 minutes on two idle cores, took an hour on two busy ones
(issue 22), and ``benchmarks/demo_under_load.py`` shows training iterations several times slower on a busy
machine with spinning threads than with sleeping ones. The policy:

* the main process: torch and OpenCV use as many threads as the CPUs the process may run on
  (``os.sched_getaffinity``, which ``taskset``, cpusets and job schedulers restrict; a CPU quota such as
  cgroup ``cpu.max`` is not seen), and OpenMP threads sleep instead of spinning while they wait
  (``OMP_WAIT_POLICY=PASSIVE``);
* each data-loader worker: one torch thread and no OpenCV threads (:func:`worker_init`), since the
  workers run beside the main process's threads;
* child processes inherit it through the environment (``OMP_NUM_THREADS``, ``OMP_WAIT_POLICY``).

What the user set wins: with ``OMP_NUM_THREADS`` in the environment, torch and OpenCV keep the thread
count it gives, and an ``OMP_WAIT_POLICY`` there is kept. OpenMP reads its wait policy once, when
torch is imported: :func:`apply_thread_policy` called before ``import torch`` sets it for this process
too; called later, for child processes only (:attr:`ThreadPolicy.waits_passively` says which).
"""
from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, MutableMapping
from typing import Any

__all__ = ['ThreadPolicy', 'allowed_cpus', 'apply_thread_policy', 'build_dataloader_with_one_thread_workers',
           'one_thread_workers', 'thread_environment', 'worker_init']

THREADS_VARIABLE = 'OMP_NUM_THREADS'
WAIT_POLICY_VARIABLE = 'OMP_WAIT_POLICY'


@dataclasses.dataclass(frozen=True)
class ThreadPolicy:
    """What :func:`apply_thread_policy` set.

    Attributes:
        cpus (int): CPUs this process may run on.
        threads (int): torch's (and OpenCV's) thread count now.
        user_threads (bool): The count came from ``OMP_NUM_THREADS`` in the environment (set by the user, or
            by the policy of a parent process).
        waits_passively (bool): This process's OpenMP threads sleep while waiting (False when torch
            was imported before the policy, or when the user chose another ``OMP_WAIT_POLICY``).
    """
    cpus: int
    threads: int
    user_threads: bool
    waits_passively: bool

    def describe(self) -> str:
        """One line for a command's output, e.g. ``2 threads (2 CPUs allowed), OpenMP waits passively``."""
        source = f'from {THREADS_VARIABLE}' if self.user_threads else f'{self.cpus} CPUs allowed'
        waiting = 'waits passively' if self.waits_passively else 'may spin while waiting'
        return f'{self.threads} thread{"s" * (self.threads != 1)} ({source}), OpenMP {waiting}'


def allowed_cpus() -> int:
    """The number of CPUs this process may run on (its affinity; the CPU count where that is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _user_threads(environ: MutableMapping[str, str]) -> int | None:
    """The first count of ``OMP_NUM_THREADS`` (it may list one per nesting level), None when unset or invalid."""
    value = environ.get(THREADS_VARIABLE, '').split(',')[0].strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def thread_environment(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """The variables the policy adds to ``environ`` (default: ``os.environ``): only those not set there.

    Returns:
        dict[str, str]: ``OMP_NUM_THREADS`` (the allowed CPUs) and ``OMP_WAIT_POLICY`` (``PASSIVE``),
        less any the environment holds already.
    """
    environ = os.environ if environ is None else environ
    policy = {THREADS_VARIABLE: str(allowed_cpus()), WAIT_POLICY_VARIABLE: 'PASSIVE'}
    if _user_threads(environ) is None:
        environ = {name: value for name, value in environ.items() if name != THREADS_VARIABLE}
    return {name: value for name, value in policy.items() if name not in environ}


def apply_thread_policy() -> ThreadPolicy:
    """Apply the policy to this process and, through ``os.environ``, to the processes it starts.

    Call it once, at the start of a command and before ``import torch`` where possible (see the module
    docstring). Calling it again is harmless.

    Returns:
        ThreadPolicy: What was set.
    """
    # OpenMP has read its wait policy if torch is loaded: only a value set before this process started counts
    waits_passively = 'torch' not in sys.modules or os.environ.get(WAIT_POLICY_VARIABLE, '').upper() == 'PASSIVE'
    user_threads = _user_threads(os.environ)
    os.environ.update(thread_environment())
    waits_passively = waits_passively and os.environ[WAIT_POLICY_VARIABLE].upper() == 'PASSIVE'

    import cv2
    import torch

    cpus = allowed_cpus()
    torch.set_num_threads(user_threads or cpus)
    cv2.setNumThreads(user_threads or cpus)
    return ThreadPolicy(cpus=cpus, threads=torch.get_num_threads(), user_threads=user_threads is not None,
                        waits_passively=waits_passively)


def worker_init(worker_id: int = 0) -> None:
    """Limit a data-loader worker to one torch thread and no OpenCV threads (a ``worker_init_fn``).

    Args:
        worker_id (int): The worker's index (unused; the argument every ``worker_init_fn`` receives).
    """
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(0)  # 0: OpenCV runs its functions in the calling thread


@dataclasses.dataclass(frozen=True)
class _OneThreadWorkerInit:
    """:func:`worker_init`, then the loader's own ``worker_init_fn``; a class so that it pickles (spawned workers)."""
    worker_init_fn: Callable[[int], Any] | None

    def __call__(self, worker_id: int) -> None:
        worker_init(worker_id)
        if self.worker_init_fn is not None:
            self.worker_init_fn(worker_id)


def one_thread_workers(worker_init_fn: Callable[[int], Any] | None) -> Callable[[int], None]:
    """A ``worker_init_fn`` that runs :func:`worker_init` before ``worker_init_fn`` (None: nothing else)."""
    if isinstance(worker_init_fn, _OneThreadWorkerInit):
        return worker_init_fn
    return _OneThreadWorkerInit(worker_init_fn)


def build_dataloader_with_one_thread_workers(build_dataloader: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap BasicSR's ``build_dataloader`` so that the loaders it builds give their workers one thread.

    A :class:`~esc_arch.compat.patching.Patch` replacement for ``basicsr.train:build_dataloader`` and
    ``basicsr.test:build_dataloader`` (the names BasicSR's pipelines call); BasicSR's own
    ``worker_init_fn`` (the per-worker seed) still runs, after :func:`worker_init`.
    """

    def build_dataloader_one_thread_workers(*args, **kwargs):
        loader = build_dataloader(*args, **kwargs)
        if loader.num_workers > 0:
            loader.worker_init_fn = one_thread_workers(loader.worker_init_fn)
        return loader

    return build_dataloader_one_thread_workers
