"""Save the training state when training is asked to stop (SIGINT, SIGTERM), then stop.

Clusters preempt jobs with SIGTERM (and SIGKILL after a grace period); Ctrl-C sends SIGINT. Within
:func:`save_on_stop_signals` (``basicsr train`` runs the training in it), the first such signal lets
the current iteration finish, saves the networks and the training state as a regular checkpoint of
that iteration would, and stops with :class:`TrainingInterrupted`, so that ``--auto_resume``
continues from that iteration. A second signal, or a signal before the first iteration, stops at
once (``KeyboardInterrupt``); the checkpoints already written stay usable, as they are written
atomically.
"""
import contextlib
import os
import signal

import torch
import torch.distributed as dist
from basicsr.utils import get_root_logger

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# What the handler has seen: the first stop signal, whether a training loop acts on it, and the
# process that installed it (DataLoader workers inherit the handler; they leave stopping to it).
_stop = {'signal': None, 'training': False, 'pid': None}


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on a signal after saving the state of its last iteration."""


def _handle_stop_signal(signum, frame):
    if os.getpid() != _stop['pid']:
        return
    if _stop['signal'] is not None or not _stop['training']:
        raise KeyboardInterrupt
    _stop['signal'] = signum


@contextlib.contextmanager
def save_on_stop_signals():
    """Within this context, SIGINT and SIGTERM make a model with :class:`SaveOnStopMixin` save and stop."""
    previous = {signum: signal.signal(signum, _handle_stop_signal) for signum in STOP_SIGNALS}
    _stop.update(signal=None, training=False, pid=os.getpid())
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _stop.update(signal=None, training=False, pid=None)


class SaveOnStopMixin:
    """Makes a BasicSR model save a checkpoint and stop after a stop signal (see the module docstring).

    Place it before the BasicSR model class in the bases. In distributed training the ranks agree on
    the iteration to stop after.
    """

    def update_learning_rate(self, current_iter, warmup_iter=-1):
        # BasicSR's training loop calls this first in every iteration, and saves after the iteration
        # when current_iter % save_checkpoint_freq == 0, passing the epoch, which only the loop knows.
        _stop['training'] = True
        if self._stop_requested():
            self.stop_after_iter = current_iter
            self.opt['logger']['save_checkpoint_freq'] = current_iter
        super().update_learning_rate(current_iter, warmup_iter)

    def save(self, epoch, current_iter):
        super().save(epoch, current_iter)
        if current_iter == getattr(self, 'stop_after_iter', None):
            message = (f'Stop signal received: networks and training state of iteration {current_iter} saved; '
                       'continue with --auto_resume.')
            get_root_logger().warning(message)
            raise TrainingInterrupted(message)

    def _stop_requested(self):
        requested = _stop['signal'] is not None
        if self.opt.get('dist'):
            flag = torch.tensor([int(requested)], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            requested = bool(flag.item())
        return requested
