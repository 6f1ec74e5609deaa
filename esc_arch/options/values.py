"""Check the values of BasicSR options (types, ranges, names) and the launcher environment up front.

BasicSR reads these values deep inside its pipelines: ``total_iter: abc`` is a ``ValueError`` after the
experiment folder was made, a misspelt ``val_freq`` a ``KeyError`` after the first iterations, a batch
larger than the training set (BasicSR drops incomplete batches) runs no iteration at all and exits as if
it had trained. :func:`check_values` reports each in one line before anything is built or written.
"""
import difflib
import math
import numbers
import os
from collections.abc import Mapping

import torch
from basicsr.utils.registry import DATASET_REGISTRY, LOSS_REGISTRY, MODEL_REGISTRY

from esc_arch.errors import OptionsError, TrainingError
from esc_arch.options.model_options import MODEL_OPTIONS, ModelOption

__all__ = ['check_values', 'check_launcher', 'check_model_options', 'KNOWN_KEYS']

# Keys that BasicSR 1.4.2's pipelines and models read in these sections; the ESC models' own are declared
# in esc_arch.options.model_options. A key that is not among them but close to one of them is taken for a
# misspelling; others are left alone (models of other packages may read them).
BASICSR_KEYS = {
    'train': ('total_iter', 'warmup_iter', 'ema_decay', 'optim_g', 'optim_d', 'scheduler', 'pixel_opt',
              'perceptual_opt', 'gan_opt', 'ldl_opt', 'feature_matching_opt', 'net_d_iters', 'net_d_init_iters',
              'net_d_reg_every', 'net_g_reg_every', 'r1_reg_weight', 'path_reg_weight', 'path_batch_shrink',
              'mixing_prob', 'dcn_lr_mul', 'flow_lr_mul', 'fix_flow', 'lr_flow', 'tsa_iter'),
    'val': ('val_freq', 'save_img', 'suffix', 'metrics', 'pbar', 'num_val_samples', 'center_frame_only',
            'flip_seq'),
    'logger': ('print_freq', 'save_checkpoint_freq', 'use_tb_logger', 'wandb'),
}
KNOWN_KEYS = {section: keys + tuple(option.key for option in MODEL_OPTIONS
                                    if option.section == section and option.key not in keys)
              for section, keys in BASICSR_KEYS.items()}
# BasicSR schedulers (``BaseModel.setup_schedulers``).
SCHEDULERS = ('MultiStepLR', 'MultiStepRestartLR', 'CosineAnnealingRestartLR')
# Sections where a declared key may be misplaced ('' is the top level).
SECTIONS = ('', 'train', 'val')
# What ``init_dist`` reads from the environment for each launcher.
LAUNCHER_VARIABLES = {
    'pytorch': ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'),
    'slurm': ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST'),
}
LAUNCHER_HINTS = {'pytorch': 'start it with torchrun (or python -m torch.distributed.run)',
                  'slurm': 'start it with srun inside a Slurm job'}


def check_launcher(launcher: str, environ: Mapping[str, str] | None = None) -> int:
    """The number of training processes for ``--launcher``; its environment variables must be set.

    Raises:
        OptionsError: A variable the launcher's initialisation reads is missing or not a number.
    """
    environ = os.environ if environ is None else environ
    if launcher not in LAUNCHER_VARIABLES:
        return 1
    missing = [name for name in LAUNCHER_VARIABLES[launcher] if not environ.get(name)]
    if missing:
        raise OptionsError(f'--launcher {launcher} needs the environment variable(s) {", ".join(missing)}, which are '
                           f'not set: {LAUNCHER_HINTS[launcher]}, or use --launcher none for one process')
    count = environ['WORLD_SIZE' if launcher == 'pytorch' else 'SLURM_NTASKS']
    if not count.isdigit() or int(count) < 1:
        raise OptionsError(f'--launcher {launcher}: the number of processes in the environment is "{count}", '
                           'not a positive integer')
    return int(count)


def check_values(opt: dict, is_train: bool = True, world_size: int = 1) -> None:
    """Check option values BasicSR reads late: names, numbers, GPUs, optimizers, schedulers, losses, keys.

    For training, also that the training set yields at least one full batch per epoch.

    Args:
        opt (dict): The options, ``--force_yml`` applied.
        is_train (bool): Options for ``basicsr train``.
        world_size (int): Number of training processes (:func:`check_launcher`).

    Raises:
        OptionsError: A wrong value, with the option named.
        TrainingError: The training would run no iteration.
    """
    name = opt.get('name')
    if not isinstance(name, str) or not name.strip():
        raise OptionsError(f'name must be a non-empty text (the experiment folder name); got {name!r}')
    check_num_gpu(opt.get('num_gpu'))
    for section in ('logger', 'val') + (('train', ) if is_train else ()):
        check_keys(opt.get(section), section)
    check_model_options(opt, is_train)
    if not is_train:
        return
    train_opt = opt.get('train') or {}
    _positive_integer(train_opt, 'total_iter', 'train', required=True)
    _integer(train_opt, 'warmup_iter', 'train')
    _number(train_opt, 'ema_decay', 'train', minimum=0, below=1)
    check_optimizers(opt)
    check_scheduler(train_opt.get('scheduler'))
    check_losses(train_opt)
    logger_opt = opt.get('logger') or {}
    _positive_integer(logger_opt, 'print_freq', 'logger', required=True)
    _positive_integer(logger_opt, 'save_checkpoint_freq', 'logger', required=True)
    if opt.get('val') is not None:
        _positive_integer(opt['val'], 'val_freq', 'val', required=True)
    train_set = (opt.get('datasets') or {}).get('train')
    if not isinstance(train_set, dict):
        raise OptionsError('datasets:train is missing: basicsr train needs a training dataset')
    check_training_set(train_set, opt.get('scale'), world_size)


def check_num_gpu(num_gpu: int | str | None) -> None:
    """``num_gpu`` is ``auto`` or a count; a count above 0 needs CUDA."""
    if num_gpu == 'auto':
        return
    if isinstance(num_gpu, bool) or not isinstance(num_gpu, int) or num_gpu < 0:
        raise OptionsError(f'num_gpu must be auto or a number of GPUs (0 for the CPU); got {num_gpu!r}')
    if num_gpu > 0 and not torch.cuda.is_available():
        raise OptionsError(f'num_gpu is {num_gpu} but CUDA is not available on this machine: '
                           'use num_gpu: 0 (CPU) or auto')


def check_keys(section_opt: dict | None, section: str) -> None:
    """A key of ``section`` that is not known but close to a known one is taken for a misspelling."""
    if section_opt is None:
        return
    if not isinstance(section_opt, dict):
        raise OptionsError(f'{section} must be a mapping')
    known = KNOWN_KEYS[section]
    for key in section_opt:
        if key in known:
            continue
        close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.8)
        if close:
            raise OptionsError(f'{section}:{key} is not an option BasicSR or ESC reads; did you mean "{close[0]}"?')


def check_model_options(opt: dict, is_train: bool = True) -> None:
    """The values of the options the ESC models declare (:data:`~esc_arch.options.model_options.MODEL_OPTIONS`).

    ``train`` values are checked for training only; a declared key written in another section than its
    own (the authors' ``use_amp`` under ``train:``, say) is an error in any case.

    Raises:
        OptionsError: A wrong value or a misplaced key, with the option named.
    """
    _check_placement(opt)
    if isinstance(opt.get('val'), dict):  # BasicSR's own switch, read as a truth value too
        _switch(opt['val'], 'save_img', 'val')
    for option in MODEL_OPTIONS:
        if option.section == 'train' and not is_train:
            continue
        values = opt.get(option.section) if option.section else opt
        if isinstance(values, dict) and values.get(option.key) is not None:
            _check_declared(values, option)


def _check_placement(opt):
    """A declared key found in a section that does not declare it: a one-line error naming its place."""
    places = {}
    for option in MODEL_OPTIONS:
        places.setdefault(option.key, []).append(option)
    for section in SECTIONS:
        values = opt.get(section) if section else opt
        if not isinstance(values, dict):
            continue
        for key in values:
            own = places.get(key, ())
            if not own or any(option.section == section for option in own) or key in BASICSR_KEYS.get(section, ()):
                continue
            here = f'{section}:{key}' if section else f'{key} (at the top level)'
            there = ' or '.join(f'{option.section}:' if option.section else 'the top level' for option in own)
            whose = "the authors' ESRModel reads it" if own[0].authors else 'the ESC models read it'
            raise OptionsError(f'{here} is in the wrong place: {whose} from {there}; move it there')


def _check_declared(values, option: ModelOption):
    where = option.section or 'options'
    if option.kind == 'switch':
        _switch(values, option.key, option.section)
    elif option.kind == 'number':
        _number(values, option.key, where, above=option.above, minimum=option.minimum)
    elif option.kind == 'integer':
        _integer(values, option.key, where, minimum=option.minimum)
    elif option.kind == 'choice' and values[option.key] not in option.choices:
        raise OptionsError(f'{option.where} must be one of {", ".join(option.choices)} or null; '
                           f'got {values[option.key]!r}')
    elif option.kind == 'compile' and not isinstance(values[option.key], (bool, dict)):
        raise OptionsError(f'{option.where} must be true, false or a mapping of torch.compile arguments; '
                           f'got {values[option.key]!r}')


def _switch(values, key, section):
    value = values.get(key)
    if value is not None and not isinstance(value, bool):
        where = f'{section}:{key}' if section else key
        raise OptionsError(f'{where} must be true or false; got {value!r}')


def check_optimizers(opt: dict) -> None:
    """Each ``train:optim_*`` has a type the model can build and a positive learning rate."""
    model_class = dict(iter(MODEL_REGISTRY)).get(opt.get('model_type'))
    for key, optim_opt in (opt.get('train') or {}).items():
        if not key.startswith('optim_') or optim_opt is None:
            continue
        where = f'train:{key}'
        if not isinstance(optim_opt, dict) or 'type' not in optim_opt:
            raise OptionsError(f'{where} must be a mapping with a "type" (e.g. Adam) and "lr"')
        _number(optim_opt, 'lr', where, above=0, required=True)
        known = _optimizer_types(model_class)
        if known is not None and optim_opt['type'] not in known:
            close = difflib.get_close_matches(str(optim_opt['type']), known, n=1)
            hint = f'did you mean "{close[0]}"? ' if close else ''
            listed = ', '.join(known) if len(known) < 5 else 'a torch.optim class, e.g. Adam, AdamW, SGD'
            raise OptionsError(f'{where}:type: {opt.get("model_type")} cannot build an optimizer '
                               f'"{optim_opt["type"]}"; {hint}it takes {listed}')


def _optimizer_types(model_class):
    """Optimizer names ``model_class`` builds: BasicSR's base models only Adam, ESC's any of torch.optim."""
    from basicsr.models.base_model import BaseModel

    from esc_arch.models.esc_model import ESCModel

    if model_class is None:
        return None
    if issubclass(model_class, ESCModel) and model_class.get_optimizer is ESCModel.get_optimizer:
        return sorted(name for name, value in vars(torch.optim).items()
                      if isinstance(value, type) and issubclass(value, torch.optim.Optimizer)
                      and value is not torch.optim.Optimizer)
    if model_class.get_optimizer is BaseModel.get_optimizer:
        return ['Adam']
    return None  # a model with its own optimizers


def check_scheduler(scheduler_opt: dict | None) -> None:
    if scheduler_opt is None:
        return
    if not isinstance(scheduler_opt, dict) or scheduler_opt.get('type') not in SCHEDULERS:
        given = scheduler_opt.get('type') if isinstance(scheduler_opt, dict) else scheduler_opt
        close = difflib.get_close_matches(str(given), SCHEDULERS, n=1)
        hint = f'did you mean "{close[0]}"? ' if close else ''
        raise OptionsError(f'train:scheduler:type: BasicSR has no scheduler "{given}"; {hint}'
                           f'it has {", ".join(SCHEDULERS)}')
    for key in ('milestones', 'periods', 'restarts'):  # iteration numbers; a scalar or text fails late or silently
        value = scheduler_opt.get(key)
        if value is not None and not (isinstance(value, list) and all(
                isinstance(item, int) and not isinstance(item, bool) for item in value)):
            raise OptionsError(f'train:scheduler:{key} must be a list of iteration numbers, e.g. [200000, 400000]; '
                               f'got {value!r}')


def check_losses(train_opt: dict) -> None:
    """Each ``train:*_opt`` loss section names a registered loss."""
    losses = dict(iter(LOSS_REGISTRY))
    for key, loss_opt in train_opt.items():
        if not key.endswith('_opt') or loss_opt is None:
            continue
        if not isinstance(loss_opt, dict) or 'type' not in loss_opt:
            raise OptionsError(f'train:{key} must be a mapping with a "type" (e.g. L1Loss)')
        if loss_opt['type'] not in losses and f'{loss_opt["type"]}_basicsr' not in losses:
            close = difflib.get_close_matches(str(loss_opt['type']), losses, n=1)
            hint = f'did you mean "{close[0]}"? ' if close else ''
            raise OptionsError(f'train:{key}:type: no loss named "{loss_opt["type"]}" is registered; {hint}'
                               f'registered: {", ".join(sorted(losses))}')


def check_training_set(dataset_opt: dict, scale: int | float, world_size: int) -> None:
    """Batch, worker, crop and enlargement values of ``datasets:train``, and at least one full batch."""
    where = 'datasets:train'
    _positive_integer(dataset_opt, 'batch_size_per_gpu', where, required=True)
    _integer(dataset_opt, 'num_worker_per_gpu', where, minimum=0)
    _number(dataset_opt, 'dataset_enlarge_ratio', where, above=0)
    if 'gt_size' in dataset_opt:
        _positive_integer(dataset_opt, 'gt_size', where)
        if isinstance(scale, int) and scale > 0 and dataset_opt['gt_size'] < scale:
            raise OptionsError(f'{where}:gt_size ({dataset_opt["gt_size"]}) must be at least scale ({scale})')
    count = count_images(dataset_opt, scale)
    if count is None:
        return
    batch = int(dataset_opt['batch_size_per_gpu'])
    ratio = dataset_opt.get('dataset_enlarge_ratio', 1)
    # BasicSR's EnlargedSampler gives each process ceil(count * ratio / world_size) samples; its training
    # DataLoader drops the last incomplete batch.
    per_process = math.ceil(count * ratio / world_size)
    if per_process < batch:
        raise TrainingError(
            f'{where}: {count} training image(s) x dataset_enlarge_ratio {ratio}'
            + (f' / {world_size} processes' if world_size > 1 else '')
            + f' give {per_process} per epoch, fewer than batch_size_per_gpu {batch}: BasicSR drops incomplete '
            'batches, so no iteration would run; lower batch_size_per_gpu or raise dataset_enlarge_ratio')


def count_images(dataset_opt: dict, scale: int | float) -> int | None:
    """The length of the training set, for dataset classes that only list files when built (no logging, no
    image reading: paired and HR-only datasets), so that it is known before BasicSR starts; else None."""
    from basicsr.data.paired_image_dataset import PairedImageDataset

    from esc_arch.data import HROnlyBicubicDataset
    from esc_arch.errors import ESCError

    cls = dict(iter(DATASET_REGISTRY)).get(dataset_opt.get('type'))
    if not (isinstance(cls, type) and issubclass(cls, (PairedImageDataset, HROnlyBicubicDataset))):
        return None
    try:
        return len(cls({**dataset_opt, 'phase': 'train', 'scale': scale}))
    except ESCError:
        raise
    except Exception:  # noqa: BLE001  (BasicSR reports it when it builds the dataset)
        return None


def _number(section_opt, key, where, required=False, above=None, minimum=None, below=None):
    value = section_opt.get(key)
    if value is None:
        if required:
            raise OptionsError(f'{where}:{key} is missing')
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise OptionsError(f'{where}:{key} must be a number; got {value!r}'
                           + (' (write 1e-4 as 1.0e-4 or !!float 1e-4)' if isinstance(value, str) else ''))
    if above is not None and value <= above:
        raise OptionsError(f'{where}:{key} must be greater than {above}; got {value}')
    if minimum is not None and value < minimum:
        raise OptionsError(f'{where}:{key} must be at least {minimum}; got {value}')
    if below is not None and value >= below:
        raise OptionsError(f'{where}:{key} must be below {below}; got {value}')


def _integer(section_opt, key, where, required=False, minimum=None):
    value = section_opt.get(key)
    _number(section_opt, key, where, required=required)
    if value is None:
        return
    if value != int(value):
        raise OptionsError(f'{where}:{key} must be a whole number; got {value}')
    if minimum is not None and value < minimum:
        raise OptionsError(f'{where}:{key} must be at least {minimum}; got {value}')


def _positive_integer(section_opt, key, where, required=False):
    _integer(section_opt, key, where, required=required, minimum=1)
