"""Saving and resuming the ESC models: atomic checkpoints and training states, learning rates from the options."""
import math
from os import path as osp

import torch
from torch import nn

from esc_arch.files import atomic_output

from basicsr.utils import get_root_logger
from basicsr.utils.dist_util import master_only

__all__ = ['TrainingStateMixin', 'save_atomically']


def save_atomically(obj: object, path: str) -> None:
    """``torch.save`` through :func:`esc_arch.files.atomic_output`: a kill while writing keeps the previous file.

    The temporary name does not end in ``.state`` or ``.pth``, so resuming never picks up a half-written
    file. A failed write raises :class:`~esc_arch.errors.OutputError` naming ``path``.
    """
    with atomic_output(path) as temporary, open(temporary, 'wb') as stream:
        torch.save(obj, stream)


class TrainingStateMixin:
    """BasicSR's saving and resuming, with atomic files, the gradient scaler's state and the options' rates."""

    @master_only
    def save_network(self, net: nn.Module | list[nn.Module], net_label: str, current_iter: int,
                     param_key: str | list[str] = 'params') -> None:
        nets = net if isinstance(net, list) else [net]
        param_keys = param_key if isinstance(param_key, list) else [param_key]
        if len(nets) != len(param_keys):
            raise ValueError('save_network needs one param_key per network')
        save_dict = {}
        for net_, key in zip(nets, param_keys):
            state_dict = self.get_bare_model(net_).state_dict()
            save_dict[key] = {name.removeprefix('module.'): value.cpu() for name, value in state_dict.items()}
        label = 'latest' if current_iter == -1 else current_iter
        save_atomically(save_dict, osp.join(self.opt['path']['models'], f'{net_label}_{label}.pth'))

    @master_only
    def save_training_state(self, epoch: int, current_iter: int) -> None:
        if current_iter == -1:
            return
        state = {
            'epoch': epoch,
            'iter': current_iter,
            'optimizers': [optimizer.state_dict() for optimizer in self.optimizers],
            'schedulers': [scheduler.state_dict() for scheduler in self.schedulers],
        }
        if self.grad_scaler is not None:
            state['grad_scaler'] = self.grad_scaler.state_dict()
        save_atomically(state, osp.join(self.opt['path']['training_states'], f'{current_iter}.state'))

    def resume_training(self, resume_state: dict) -> None:
        """BasicSR's resume; learning rates changed in the options since the state was saved win (logged)."""
        super().resume_training(resume_state)
        if self.grad_scaler is not None and 'grad_scaler' in resume_state:
            self.grad_scaler.load_state_dict(resume_state['grad_scaler'])
        for skipped in resume_state.get('skipped_states', ()):
            get_root_logger().warning(f'Skipped the unreadable training state {skipped}.')
        self._learning_rates_from_options()

    def _learning_rates_from_options(self):
        """Give each optimizer the ``train:optim_*:lr`` of the options when its resumed state has another one.

        BasicSR's resume restores the saved learning rate, so lowering it after a divergence had no effect.
        The saved rates (current, initial and the scheduler's base rates) are scaled by new / saved initial
        rate: the schedule goes on from where it was (a decay already applied stays applied). The
        scheduler's record of its last rates (``get_last_lr``) catches up at its next ``step``, which BasicSR
        makes at the start of every resumed iteration, before anything reads it.
        """
        for key, optim_opt in self.opt['train'].items():
            optimizer = getattr(self, f'optimizer_{key.removeprefix("optim_")}', None) if key.startswith('optim_') \
                else None
            if optimizer is None or not isinstance(optim_opt, dict) or 'lr' not in optim_opt:
                continue
            groups = optimizer.param_groups
            saved, wanted = groups[0].get('initial_lr', groups[0]['lr']), float(optim_opt['lr'])
            if math.isclose(saved, wanted, rel_tol=1e-6):
                continue
            ratio = wanted / saved
            for group in groups:
                group['lr'] *= ratio
                if 'initial_lr' in group:
                    group['initial_lr'] *= ratio
            index = next((i for i, known in enumerate(self.optimizers) if known is optimizer), None)
            if index is not None and index < len(self.schedulers):
                scheduler = self.schedulers[index]
                scheduler.base_lrs = [lr * ratio for lr in scheduler.base_lrs]
            get_root_logger().info(f'train:{key}:lr is {wanted:g} in the options and {saved:g} in the resumed state: '
                                   f'using {wanted:g} (current learning rate {groups[0]["lr"]:g}).')
