"""ESCModel: BasicSR's SRModel plus what ESC's recipe and large validation images need."""
import math
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable
from functools import partial
from os import path as osp

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger
from basicsr.utils.dist_util import master_only
from basicsr.utils.registry import MODEL_REGISTRY

from esc_arch.checkpoint import adapt_state_dict, load_into_network, load_state_dict
from esc_arch.errors import CheckpointError, NonFiniteLossError, OptionsError, OutputError
from esc_arch.models.authors_options import translate_authors_keys
from esc_arch.models.stop_on_signal import SaveOnStopMixin
from esc_arch.inference.tiling import tiled_forward
from esc_arch.inference.window_padding import forward_padded_to_window
from esc_arch.inference.compilation import compile_network, compile_unavailable_reason
from esc_arch.models.progress import LoggedProgress, progress_choice

__all__ = ['ESCModel', 'ESRModel', 'save_atomically', 'self_ensemble']

AMP_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}


def save_atomically(obj: object, path: str) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it into place.

    A crash or kill while writing leaves any previous ``path`` intact. The temporary name does not
    end in ``.state`` or ``.pth``, so resuming never picks up a half-written file. A write that fails
    (full disk, read-only folder) raises :class:`~esc_arch.errors.OutputError` naming ``path``.
    """
    temporary = osp.join(osp.dirname(path), f'.{osp.basename(path)}.{os.getpid()}.tmp')
    try:
        with open(temporary, 'wb') as stream:
            torch.save(obj, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        if osp.exists(temporary):
            os.remove(temporary)
        if isinstance(error, OSError) and not isinstance(error, OutputError):
            raise OutputError(f'cannot write {path}: {error.strerror or error} (the previous file, if any, is '
                              'kept)') from None
        raise


def self_ensemble(forward: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    """Average ``forward`` over the 8 flips/transposes of ``images``, each mapped back (x8 ensemble)."""
    total = 0
    for transpose in (False, True):
        for flips in ((), (-1, ), (-2, ), (-2, -1)):
            view = images.transpose(-2, -1) if transpose else images
            output = forward(view.flip(flips) if flips else view)
            output = output.flip(flips) if flips else output
            total = total + (output.transpose(-2, -1) if transpose else output)
    return total / 8


@MODEL_REGISTRY.register()
class ESCModel(SaveOnStopMixin, SRModel):
    """Super-resolution model for ESC, built on BasicSR's ``SRModel`` (EMA, warm-up, schedulers,
    metrics and saving are SRModel's). Registered as ``ESCModel`` and as ``ESRModel``, the name in the
    authors' options files. Everything added is off unless its option is set, except the authors'
    test-time padding (``val.pad_to_window``) and the test progress (``val.pbar``).

    Options added (YAML keys):

    * ``train.optim_g.type``: any ``torch.optim`` class, e.g. ``AdamW`` (BasicSR 1.4.2 knows only Adam);
      the other ``optim_g`` keys are its arguments.
    * ``train.mixed_precision``: ``bf16`` or ``fp16`` autocast of the network in training (``fp16``
      uses a gradient scaler, unscaled before clipping, saved in the training state). Default: off.
    * ``train.clip_grad_norm``: clip the gradient norm to this value; the norm is logged as
      ``grad_norm``. Default: off.
    * ``train.compile``: ``true`` or a dict of ``torch.compile`` arguments: compile the trained network
      in place (checkpoint keys unchanged). Default: off.
    * ``train.max_consecutive_nonfinite``: a step whose loss (or clipped gradient norm) is NaN/inf is
      skipped, leaving weights, optimizer and EMA untouched; after this many such steps in a row
      training stops with :class:`NonFiniteLossError`, naming the newest training state saved before
      the first skipped step to resume from. All ranks skip together. Default: 10.
    * ``train.optim_*.lr`` on resume: when it differs from the resumed state's initial learning rate
      (lowered after a divergence, say), the options' rate is used, the schedule keeping its position;
      logged.
    * ``val.tile_size`` / ``val.tile_pad``: validate/test large images in tiles of ``tile_size`` LR
      pixels with ``tile_pad`` pixels of context (:func:`esc_arch.inference.tiled_forward`). Default: whole image.
    * ``val.self_ensemble``: average over the 8 flips/rotations of the input (x8). Default: false.
    * ``val.compile``: ``true`` or a dict of ``torch.compile`` arguments: ``basicsr test`` runs the network
      compiled (:func:`esc_arch.inference.compilation.compile_network`; eager with a notice where compiling
      is unavailable). Default: off.
    * ``val.pbar``: progress of validation/testing, on by default for ``basicsr test``: BasicSR's bar on a
      terminal, a log line per image otherwise.
    * ``use_amp`` / ``gradient_clip`` (the authors' keys, in ``train:`` or at the top level): read as
      ``train.mixed_precision: bf16`` / ``train.clip_grad_norm`` (:mod:`esc_arch.models.authors_options`).
      ``network_g.attn_type: flex`` runs as ``sdpa`` (the same attention) on CPU.
    * ``val.pad_to_window``: test as the authors do: reflect-pad the LR image at the bottom and right
      to multiples of the network's ``window_size``, run, crop the output
      (:func:`esc_arch.inference.window_padding.forward_padded_to_window`); with tiling, the padded
      image is tiled; with self-ensemble, each flipped/rotated view is padded. Default: true for
      networks with a ``window_size``; ``false`` feeds images as they are (the networks pad internally).

    Also: network checkpoints and training states are written atomically (temporary file, then rename), so a kill
    while saving leaves the previous files usable; a checkpoint of another scale loads into ESC/ESC-FP
    (``pretrain_network_g`` + ``param_key_g: params_ema``, ``strict_load_g: true`` or false), its
    ``to_img`` being resampled by the network; distributed training also runs on CPU (gloo); checkpoints
    are read safely (:meth:`load_network`); under ``basicsr train`` a SIGINT/SIGTERM saves the state of
    the last finished iteration before stopping (:mod:`esc_arch.models.stop_on_signal`).
    """

    def __init__(self, opt: dict):
        authors_keys = translate_authors_keys(opt)
        train_opt = opt.get('train') or {}
        precision = train_opt.get('mixed_precision') or None
        if precision is not None and precision not in AMP_DTYPES:
            raise OptionsError(f'train.mixed_precision must be one of {", ".join(AMP_DTYPES)} or null; '
                               f'got {precision!r}')
        self.amp_dtype = AMP_DTYPES.get(precision)
        self.grad_scaler = None
        self.nonfinite_in_a_row = 0
        self.first_nonfinite_iter = None  # where the current run of non-finite steps began
        super().__init__(opt)
        for note in authors_keys:
            get_root_logger().info(f"Authors' option {note}")
        self._replace_flex_attention_on_cpu()
        compile_opt = (opt.get('val') or {}).get('compile')
        if compile_opt and not self.is_train:
            self._compile_for_testing(compile_opt if isinstance(compile_opt, dict) else {})

    def _replace_flex_attention_on_cpu(self):
        """``attn_type: flex`` (the authors' options say ``Flex``) runs as ``sdpa`` on CPU: the same attention,
        where FlexAttention on CPU has no backward pass and compiles itself again for every image size."""
        if self.device.type != 'cpu':
            return
        bare_networks = [self.get_bare_model(net) for net in (self.net_g, getattr(self, 'net_g_ema', None)) if net]
        flex = [bare for bare in bare_networks if getattr(bare, 'attn_type', None) == 'flex']
        for bare in flex:
            bare.attn_type = 'sdpa'
        if flex:
            get_root_logger().info('network_g:attn_type flex runs as sdpa on CPU (the same attention; FlexAttention '
                                   'on CPU cannot train and compiles for every image size)')

    def _compile_for_testing(self, compile_options):
        """``val.compile``: test through ``torch.compile`` (eager, with a notice, where it is unavailable)."""
        logger = get_root_logger()
        if self.get_bare_model(self.net_g) is not self.net_g:
            logger.warning('val.compile: not compiling a network wrapped for several GPUs; testing eagerly')
            return
        self.net_g, _ = compile_network(self.net_g, log=logger.info, **compile_options)

    def print_network(self, net: nn.Module) -> None:
        """BasicSR's printout (class, parameters, structure), the structure only when training: the structure
        of a tested network is in its options, and a train-then-test run (``basicsr demo``) logs it once."""
        if self.is_train:
            super().print_network(net)
        else:
            bare = self.get_bare_model(net)
            get_root_logger().info(f'Network: {type(bare).__name__}, with parameters: '
                                   f'{sum(p.numel() for p in bare.parameters()):,d}')

    def nondist_validation(self, dataloader: DataLoader, current_iter: int, tb_logger: object | None,
                           save_img: bool) -> None:
        """SRModel's, with progress: ``val.pbar`` defaults to on when testing, and is a log line per image when
        stderr is not a terminal (:mod:`esc_arch.models.progress`)."""
        val_opt = self.opt['val']
        bar, log_lines = progress_choice(val_opt, self.is_train)
        if log_lines:
            dataloader = LoggedProgress(dataloader, get_root_logger().info)
        had_pbar, saved_pbar = 'pbar' in val_opt, val_opt.get('pbar')
        val_opt['pbar'] = bar
        try:
            super().nondist_validation(dataloader, current_iter, tb_logger, save_img)
        finally:
            if had_pbar:
                val_opt['pbar'] = saved_pbar
            else:
                del val_opt['pbar']

    def model_to_device(self, net: nn.Module) -> nn.Module:
        if self.opt['dist'] and self.device.type == 'cpu':  # BasicSR pins DDP to a CUDA device
            return DistributedDataParallel(
                net.to(self.device), find_unused_parameters=self.opt.get('find_unused_parameters', False))
        return super().model_to_device(net)

    def init_training_settings(self) -> None:
        super().init_training_settings()
        train_opt = self.opt['train']
        if self.amp_dtype == torch.float16:
            self.grad_scaler = torch.amp.GradScaler(self.device.type)
        compile_opt = train_opt.get('compile')
        if compile_opt:
            compile_options = compile_opt if isinstance(compile_opt, dict) else {}
            # inductor, the default backend, needs a C++ compiler (CPU) or Triton (CUDA): without them the first
            # iteration would fail deep inside it
            unavailable = 'backend' not in compile_options and compile_unavailable_reason(self.device)
            if unavailable:
                get_root_logger().warning(f'train.compile: not compiling: {unavailable}; training eagerly')
            else:
                self.get_bare_model(self.net_g).compile(**compile_options)
                get_root_logger().info('train.compile: the network is compiled during the first training '
                                       'iteration (a minute or more on a CPU; the first iteration log line shows '
                                       'its time)')
        if self.amp_dtype is not None:
            get_root_logger().info(f'Mixed precision training: {train_opt["mixed_precision"]}')

    def get_optimizer(self, optim_type: str, params: Iterable, lr: float, **kwargs: object) -> torch.optim.Optimizer:
        optimizer_class = getattr(torch.optim, optim_type, None)
        if not (isinstance(optimizer_class, type) and issubclass(optimizer_class, torch.optim.Optimizer)):
            raise OptionsError(f'train.optim_g.type: {optim_type!r} is not a torch.optim optimizer (e.g. Adam, AdamW)')
        return optimizer_class(params, lr, **kwargs)

    def training_forward(self) -> torch.Tensor:
        """The network's output for the current training batch; models whose networks take more inputs override it."""
        return self.net_g(self.lq)

    def optimize_parameters(self, current_iter: int) -> None:
        self.optimizer_g.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            self.output = self.training_forward()
        l_total, loss_dict = self._losses(self.output.float())
        self.log_dict = self.reduce_loss_dict(loss_dict)
        if not self._finite_on_all_ranks(l_total):
            self._skip_step(current_iter, 'loss')
            return

        scaler = self.grad_scaler
        (scaler.scale(l_total) if scaler else l_total).backward()
        max_norm = self.opt['train'].get('clip_grad_norm')
        if max_norm:
            if scaler:
                scaler.unscale_(self.optimizer_g)
            grad_norm = torch.nn.utils.clip_grad_norm_(self.net_g.parameters(), max_norm)
            self.log_dict['grad_norm'] = grad_norm.item()
            # With a scaler, inf gradients are its normal signal to lower the scale: scaler.step skips them.
            if not scaler and not math.isfinite(self.log_dict['grad_norm']):
                self.optimizer_g.zero_grad(set_to_none=True)
                self._skip_step(current_iter, 'gradient norm')
                return
        if scaler:
            scaler.step(self.optimizer_g)
            scaler.update()
        else:
            self.optimizer_g.step()
        self.nonfinite_in_a_row = 0

        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    def _losses(self, output):
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

    def _finite_on_all_ranks(self, value):
        finite = torch.isfinite(value.detach()).to(torch.int32).reshape(1)
        if self.opt['dist']:
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        return bool(finite.item())

    def _skip_step(self, current_iter, what):
        if self.nonfinite_in_a_row == 0:
            self.first_nonfinite_iter = current_iter
        self.nonfinite_in_a_row += 1
        limit = self.opt['train'].get('max_consecutive_nonfinite', 10)
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

    def test(self) -> None:
        net = self.net_g_ema if hasattr(self, 'net_g_ema') else self.net_g
        was_training = net.training
        net.eval()
        val_opt = self.opt.get('val') or {}
        scale = self.opt['scale']
        tiling = {'tile_size': val_opt.get('tile_size')}
        if val_opt.get('tile_pad') is not None:
            tiling['tile_pad'] = val_opt['tile_pad']
        forward = partial(tiled_forward, net, scale=scale, **tiling)
        window_size = getattr(self.get_bare_model(net), 'window_size', None)
        if val_opt.get('pad_to_window', True) and isinstance(window_size, int) and window_size > 1:
            # The authors' test protocol (their ESRModel.test), with which the paper's tables were made.
            forward = partial(forward_padded_to_window, forward, window_size=window_size, scale=scale)
        with torch.no_grad():
            self.output = self_ensemble(forward, self.lq) if val_opt.get('self_ensemble') else forward(self.lq)
        net.train(was_training)

    def load_network(self, net: nn.Module, load_path: str, strict: bool = True,
                     param_key: str | None = 'params') -> None:
        """BasicSR's ``load_network``, reading the file with :mod:`esc_arch.checkpoint`: tensors only
        (``weights_only``; a checkpoint that would run code is refused), adapted to the network
        (:func:`~esc_arch.checkpoint.adapt_state_dict`: a ``to_img`` of another scale is resampled, and the
        log says so), and a strict load that does not fit the network raises
        :class:`~esc_arch.errors.CheckpointError` saying how it differs."""
        bare = self.get_bare_model(net)
        logger = get_root_logger()
        logger.info(f'Loading {bare.__class__.__name__} model from {load_path}, param key {param_key}.')
        state_dict = adapt_state_dict(load_state_dict(load_path, param_key), bare, notify=logger.info)
        self._print_different_keys_loading(bare, state_dict, strict)
        if strict:
            load_into_network(bare, state_dict, source=load_path)
            return
        try:
            bare.load_state_dict(state_dict, strict=False)
        except RuntimeError as error:  # strict=False skips missing/unexpected tensors, not mismatched shapes
            mismatch = next((line.strip() for line in str(error).splitlines() if 'size mismatch' in line),
                            ' '.join(str(error).split()))
            raise CheckpointError(f'{load_path} does not fit {bare.__class__.__name__} (strict_load_g: false): '
                                  f'{mismatch}') from None

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
        rate: the schedule goes on from where it was (a decay already applied stays applied).
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
                scheduler._last_lr = [group['lr'] for group in groups]
            get_root_logger().info(f'train:{key}:lr is {wanted:g} in the options and {saved:g} in the resumed state: '
                                   f'using {wanted:g} (current learning rate {groups[0]["lr"]:g}).')


@MODEL_REGISTRY.register()
class ESRModel(ESCModel):
    """:class:`ESCModel` under the name the authors' options files use (``model_type: ESRModel``)."""
