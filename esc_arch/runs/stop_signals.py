"""Save the training state when training is asked to stop (SIGINT, SIGTERM), then stop.

Clusters preempt jobs with SIGTERM (and SIGKILL after a grace period); Ctrl-C sends SIGINT. Within
:func:`save_on_stop_signals` (``basicsr train`` runs the training in it), the first such signal lets
the current iteration (and a validation in progress) finish, saves the networks and the training
state as a regular checkpoint of that iteration would (epoch included), and stops with
:class:`TrainingInterrupted`, so that ``--auto_resume`` continues from that iteration. A second
signal, or a signal before the first iteration, stops at once (``KeyboardInterrupt``); the
checkpoints already written stay usable, as they are written atomically. BasicSR's DataLoader
workers ignore these signals, which clusters send to every process of a job: the training process
stops them (``workers-ignore-stop-signals``); they are forked with SIGTERM blocked, so that one
arriving while a worker starts waits for it (:func:`start_workers_with_sigterm_blocked`). The
training sampler, whose epoch a stop save records, and the training loader are handed over by the
``checked-train-dataloaders`` patch (:func:`follow_training_sampler`); both are rows of
:mod:`esc_arch.compat.table` that ``basicsr train`` applies.
"""
import contextlib
import multiprocessing
import multiprocessing.context
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

import torch
import torch.distributed as dist

from basicsr.data import worker_init_fn as basicsr_worker_init_fn
from basicsr.utils import get_root_logger

__all__ = ['SaveOnStopMixin', 'TrainingInterrupted', 'can_wait_for_signals', 'follow_training_sampler',
           'save_on_stop_signals', 'start_workers_with_sigterm_blocked', 'worker_init_ignoring_stop_signals']

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# What the handler has seen: the first stop signal, whether a training loop acts on it, the process
# that installed it (DataLoader workers inherit the handler and leave stopping to it), and the
# training sampler, whose epoch is the training loop's.
_stop = {'signal': None, 'training': False, 'pid': None, 'sampler': None}


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on a signal after saving the state of its last finished iteration."""


def _handle_stop_signal(signum: int, frame: FrameType | None) -> None:
    if os.getpid() != _stop['pid']:
        return
    if _stop['signal'] is not None or not _stop['training']:
        raise KeyboardInterrupt
    _stop['signal'] = signum


def worker_init_ignoring_stop_signals(worker_id: int, num_workers: int, rank: int, seed: int) -> None:
    """BasicSR's DataLoader ``worker_init_fn``; the worker also leaves stop signals to the training process.

    Clusters signal every process of a job. Torch's SIGTERM handler ends a DataLoader worker at once
    unless its parent sent the signal, which fails the training process before it can save. Here a
    thread takes the worker's SIGTERMs instead: one from the parent (which is how it stops its
    workers when it exits) still ends the worker, others are ignored; SIGINT is ignored.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    threading.Thread(target=_end_on_sigterm_from_parent, name='sigterm', daemon=True).start()
    basicsr_worker_init_fn(worker_id, num_workers, rank, seed)


def _end_on_sigterm_from_parent():
    while True:
        if signal.sigwaitinfo({signal.SIGTERM}).si_pid == os.getppid():
            os._exit(0)


def can_wait_for_signals(original: object = None) -> bool:
    """Whether workers can take SIGTERM in a thread (``signal.sigwaitinfo``: Linux and most Unixes, not macOS)."""
    return hasattr(signal, 'sigwaitinfo')


class _SigtermBlockedProcess(multiprocessing.context.ForkProcess):
    """A forked process whose signal mask, inherited at the fork, blocks SIGTERM."""

    def start(self) -> None:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            super().start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class _SigtermBlockedForkContext(multiprocessing.context.ForkContext):
    Process = _SigtermBlockedProcess


def start_workers_with_sigterm_blocked(loader: torch.utils.data.DataLoader) -> None:
    """Fork ``loader``'s workers with SIGTERM blocked, so that none arriving before their ``worker_init_fn`` ends them.

    A worker installs torch's SIGTERM handler first and runs :func:`worker_init_ignoring_stop_signals`
    after it: a SIGTERM in between (BasicSR forks new workers at every epoch) ended the worker and
    failed the training. Blocked from the fork on, it stays pending until the worker's signal thread
    takes it. Only for forked workers (the default on Linux) where that thread exists.
    """
    if (loader.num_workers > 0 and loader.multiprocessing_context is None and can_wait_for_signals()
            and multiprocessing.get_start_method() == 'fork'):
        loader.multiprocessing_context = _SigtermBlockedForkContext()


def follow_training_sampler(sampler: object) -> None:
    """Record the training loop's sampler (it calls its ``set_epoch`` at the start of every epoch)."""
    _stop['sampler'] = sampler


@contextlib.contextmanager
def save_on_stop_signals() -> Iterator[None]:
    """Within this context, SIGINT and SIGTERM make a model with :class:`SaveOnStopMixin` save and stop."""
    previous = {signum: signal.signal(signum, _handle_stop_signal) for signum in STOP_SIGNALS}
    _stop.update(signal=None, training=False, pid=os.getpid(), sampler=None)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _stop.update(signal=None, training=False, pid=None, sampler=None)


class SaveOnStopMixin:
    """Makes a BasicSR model save a checkpoint and stop after a stop signal (see the module docstring).

    Place it before the BasicSR model class in the bases. In distributed training the ranks agree on
    the iteration to stop after.
    """

    def update_learning_rate(self, current_iter: int, warmup_iter: int = -1) -> None:
        # BasicSR's training loop calls this first in every iteration: the networks, optimizers and
        # schedulers are now as a checkpoint after iteration current_iter - 1 would save them.
        _stop['training'] = True
        if self._stop_requested():
            if current_iter == 1:
                raise TrainingInterrupted('Stop signal received before the first iteration: nothing to save.')
            self.save(_stop['sampler'].epoch, current_iter - 1)
            if self.opt.get('dist'):
                # Rank 0 writes; the others must not exit first, or the launcher tears the job
                # down (SIGTERM to rank 0) in the middle of the save.
                dist.barrier()
            message = (f'Stop signal received: networks and training state of iteration {current_iter - 1} saved; '
                       'continue with --auto_resume.')
            get_root_logger().warning(message)
            raise TrainingInterrupted(message)
        super().update_learning_rate(current_iter, warmup_iter)

    def _stop_requested(self):
        requested = _stop['signal'] is not None
        if self.opt.get('dist'):
            flag = torch.tensor([int(requested)], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            requested = bool(flag.item())
        return requested
