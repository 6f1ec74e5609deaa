"""One training step of the ESC models: mixed precision, gradient clipping and the non-finite guard.

The options are declared in :mod:`esc_arch.options.model_options` (``train.mixed_precision``,
``train.clip_grad_norm``, ``train.max_consecutive_nonfinite`` and the authors' ``use_amp`` and
``train.gradient_clip``, :mod:`esc_arch.models.authors_options`).
"""
import math
from collections import OrderedDict

import torch
import torch.distributed as dist

from esc_arch.errors import NonFiniteLossError
from esc_arch.models.authors_options import AUTHORS_AMP_PRECISION, AuthorsKeys
from esc_arch.options.model_options import option_value

from basicsr.utils import get_root_logger

__all__ = ['AMP_DTYPES', 'TrainingStepMixin']

AMP_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}


class TrainingStepMixin:
    """``optimize_parameters`` for models with ``net_g``, ``optimizer_g``, ``cri_pix``/``cri_perceptual``.

    Call :meth:`_read_training_options` in ``__init__`` before BasicSR's, and
    :meth:`_make_grad_scaler` in ``init_training_settings``. Models whose network takes more inputs
    override :meth:`training_forward`.
    """
    reads_authors_keys = True
    """Whether the model applies the authors' ``use_amp``/``gradient_clip`` (their ESRModel does)."""

    def _read_training_options(self, opt: dict) -> None:
        self.authors = AuthorsKeys.read(opt, type(self).__name__, self.reads_authors_keys)
        train_opt = opt.get('train')
        precision = option_value(opt, 'train', 'mixed_precision') if isinstance(train_opt, dict) else None
        self.precision = AUTHORS_AMP_PRECISION if self.authors.use_amp else precision
        self.amp_dtype = AMP_DTYPES.get(self.precision)
        self.grad_scaler = None
        self.nonfinite_in_a_row = 0
        self.first_nonfinite_iter = None  # where the current run of non-finite steps began

    def _make_grad_scaler(self) -> None:
        """fp16 needs loss scaling (its exponent range is small); bf16 does not."""
        if self.amp_dtype == torch.float16:
            self.grad_scaler = torch.amp.GradScaler(self.device.type)
        for note in self.authors.notes:
            get_root_logger().info(note)
        if self.amp_dtype is None:
            return
        how = ''
        if self.authors.use_amp:
            how = " (the authors' use_amp: forward and losses under autocast, no gradient clipping)"
        if self.grad_scaler and self.device.type != 'cuda':
            how += f" with torch's {self.device.type} gradient scaler (slow where the processor has no fp16 arithmetic)"
        elif self.grad_scaler:
            how += ' with a gradient scaler'
        get_root_logger().info(f'Mixed precision training: {self.precision} on {self.device.type}{how}')

    def training_forward(self) -> torch.Tensor:
        """The network's output for the current training batch; models whose networks take more inputs override it."""
        return self.net_g(self.lq)

    def optimize_parameters(self, current_iter: int) -> None:
        self.optimizer_g.zero_grad(set_to_none=True)
        with self._autocast():
            self.output = self.training_forward()
        # the authors' use_amp computes the losses under autocast too; ESC's mixed_precision in float32
        with self._autocast(enabled=self.authors.use_amp):
            l_total, loss_dict = self._losses(self.output if self.authors.use_amp else self.output.float())
        self.log_dict = self.reduce_loss_dict(loss_dict)
        if not self._finite_on_all_ranks(l_total):
            self._skip_step(current_iter, 'loss')
            return

        scaler = self.grad_scaler
        (scaler.scale(l_total) if scaler else l_total).backward()
        if not self._clip_gradients(current_iter):
            return
        if scaler:
            scaler.step(self.optimizer_g)
            scaler.update()
        else:
            self.optimizer_g.step()
        self.nonfinite_in_a_row = 0

        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    def _autocast(self, enabled: bool = True):
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=enabled and self.amp_dtype is not None)

    def _clip_gradients(self, current_iter: int) -> bool:
        """Clip to ``train.clip_grad_norm`` or the authors' ``gradient_clip``; False when the step was skipped."""
        max_norm = self.authors.clip_bound(current_iter) or self.opt['train'].get('clip_grad_norm')
        if not max_norm:
            return True
        scaler = self.grad_scaler
        if scaler:
            scaler.unscale_(self.optimizer_g)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.net_g.parameters(), max_norm)
        self.log_dict['grad_norm'] = grad_norm.item()
        # With a scaler, inf gradients are its normal signal to lower the scale: scaler.step skips them.
        if not scaler and not math.isfinite(self.log_dict['grad_norm']):
            self.optimizer_g.zero_grad(set_to_none=True)
            self._skip_step(current_iter, 'gradient norm')
            return False
        return True

    def _losses(self, output: torch.Tensor) -> tuple:
        l_total = 0
        loss_dict = OrderedDict()
        if self.cri_pix:
            loss_dict['l_pix'] = self.cri_pix(output, self.gt)
        if self.cri_perceptual:
            loss_dict['l_percep'], loss_dict['l_style'] = self.cri_perceptual(output, self.gt)
        loss_dict = OrderedDict((name, value) for name, value in loss_dict.items() if value is not None)
        for value in loss_dict.values():
            l_total = l_total + value
        return l_total, loss_dict

    def _finite_on_all_ranks(self, value: torch.Tensor) -> bool:
        finite = torch.isfinite(value.detach()).to(torch.int32).reshape(1)
        if self.opt['dist']:
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        return bool(finite.item())

    def _skip_step(self, current_iter: int, what: str) -> None:
        if self.nonfinite_in_a_row == 0:
            self.first_nonfinite_iter = current_iter
        self.nonfinite_in_a_row += 1
        limit = option_value(self.opt, 'train', 'max_consecutive_nonfinite')
        message = (f'Iteration {current_iter}: non-finite {what}; step skipped, weights and EMA unchanged '
                   f'({self.nonfinite_in_a_row} in a row).')
        get_root_logger().warning(message)
        if self.nonfinite_in_a_row >= limit:
            raise NonFiniteLossError(
                f'{self.nonfinite_in_a_row} training steps in a row had a non-finite {what} (last at iteration '
                f'{current_iter}); stopping. Lower the learning rate or set train.clip_grad_norm, then '
                + self._where_to_resume())

    def _where_to_resume(self):
        """How to resume from the newest training state saved before the non-finite steps began."""
        from esc_arch.compat.resume import training_states

        first = self.first_nonfinite_iter
        states = training_states(self.opt['path'].get('training_states') or '')
        before = [(iteration, path) for iteration, path in states if iteration < first]
        if not before:
            return (f'start again: no training state was saved before the first non-finite step (iteration '
                    f'{first}).')
        iteration, path = before[0]
        newer = '' if states[0][1] == path else (f' (not --auto_resume: it would take {states[0][1]}, saved '
                                                 'after the non-finite steps began)')
        return (f'resume from {path} (iteration {iteration}, before the first non-finite step at iteration '
                f'{first}) with --force_yml path:resume_state={path}{newer}.')
