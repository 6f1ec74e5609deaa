"""Check the values of BasicSR options (types, ranges, names) and the launcher environment up front.

BasicSR reads these values deep inside its pipelines: ``total_iter: abc`` is a ``ValueError`` after the
experiment folder was made, a misspelt ``val_freq`` a ``KeyError`` after the first iterations, a batch
larger than the training set (BasicSR drops incomplete batches) runs no iteration at all and exits as if
it had trained. :func:`check_values` reports each in one line before anything is built or written.
"""
import difflib
import fnmatch
import importlib.util
import inspect
import math
import ntpath
import numbers
import operator
import os
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch

from esc_arch.errors import OptionsError, TrainingError
from esc_arch.options.model_options import MODEL_OPTIONS, ModelOption

from basicsr.utils.registry import DATASET_REGISTRY, LOSS_REGISTRY, MODEL_REGISTRY

__all__ = ['BASICSR_VALUES', 'KNOWN_KEYS', 'check_basicsr_values', 'check_experiment_name', 'check_launcher',
           'check_model_options', 'check_values', 'unknown_keyword']

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

# The longest experiment name, in bytes: BasicSR names files NAME plus up to 26 characters inside its folders
# (train_NAME_<time>.log) and archives a folder as NAME_archived_<time>; file names have at most 255 bytes.
MAX_NAME_BYTES = 200
# Sections BasicSR reads only in training.
TRAINING_SECTIONS = ('train', 'logger')


@dataclass(frozen=True)
class Value:
    """What one of BasicSR's own option values must be; checked by :func:`check_basicsr_values`.

    Attributes:
        section (str): Where the key is, as in ``--force_yml`` (``datasets:*:io_backend``); each level is an
            ``fnmatch`` pattern; ``''`` is the top level.
        key (str): The key (an ``fnmatch`` pattern).
        kind (str): ``text``, ``component`` (text that becomes one file name), ``switch``, ``integer``,
            ``number``, ``numbers`` (a list of numbers), ``mapping``, ``choice`` or ``template`` (text with one
            ``{}``).
        required (bool): Null or absent is an error too (else it means BasicSR's default).
        minimum, above, below, maximum (float | None): The range of a number (of each number of a list).
        choices (tuple): The values of a ``choice``.
        length (int | None): The length of a ``numbers`` list.
    """
    section: str
    key: str
    kind: str
    required: bool = False
    minimum: float | None = None
    above: float | None = None
    below: float | None = None
    maximum: float | None = None
    choices: tuple = ()
    length: int | None = None


BASICSR_VALUES = (
    Value('', 'path', 'mapping', required=True),
    Value('', 'datasets', 'mapping', required=True),
    Value('', 'train', 'mapping', required=True),
    Value('', 'logger', 'mapping', required=True),
    Value('', 'val', 'mapping'),
    # numpy's seed must be below 2**32 and BasicSR adds the process rank: 31 bits leave room for any rank
    Value('', 'manual_seed', 'integer', minimum=0, maximum=2**31 - 1),
    Value('path', 'pretrain_network_*', 'text'),
    Value('path', 'resume_state', 'text'),
    Value('path', 'param_key_*', 'text'),
    Value('path', 'strict_load_*', 'switch'),
    Value('datasets', '*', 'mapping'),
    Value('datasets:*', 'name', 'component'),
    Value('datasets:*', 'dataroot*', 'text'),
    Value('datasets:*', 'meta_info_file', 'text'),
    Value('datasets:*', 'io_backend', 'mapping'),
    Value('datasets:*:io_backend', 'type', 'choice', required=True, choices=('disk', 'lmdb', 'memcached')),
    Value('datasets:*', 'filename_tmpl', 'template'),
    Value('datasets:*', 'prefetch_mode', 'choice', choices=('cpu', 'cuda')),
    Value('datasets:*', 'num_prefetch_queue', 'integer', minimum=1),
    Value('datasets:*', 'use_hflip', 'switch'),
    Value('datasets:*', 'use_rot', 'switch'),
    Value('datasets:*', 'use_shuffle', 'switch'),
    Value('datasets:*', 'pin_memory', 'switch'),
    Value('val', 'suffix', 'component'),
    Value('train:optim_*', 'betas', 'numbers', minimum=0, below=1, length=2),
    Value('train:optim_*', 'weight_decay', 'number', minimum=0),
    Value('train:optim_*', 'eps', 'number', above=0),
    Value('train:optim_*', 'momentum', 'number', minimum=0),
    Value('train:*_opt', 'loss_weight', 'number', minimum=0),
    Value('train:*_opt', 'reduction', 'choice', choices=('none', 'mean', 'sum')),
    Value('train:scheduler', 'gamma', 'number', above=0),
    Value('train:scheduler', 'eta_min', 'number', minimum=0),
    Value('train:scheduler', 'restart_weights', 'numbers', minimum=0),
    Value('logger', 'use_tb_logger', 'switch'),
    Value('logger', 'wandb', 'mapping'),
    Value('logger:wandb', 'project', 'text'),
    Value('logger:wandb', 'resume_id', 'text'),
)
"""BasicSR's own values that its pipelines use unchecked (a traceback, often after the experiment folder is made)."""


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
    check_experiment_name(opt.get('name'))
    check_num_gpu(opt.get('num_gpu'))
    check_prefetch(opt.get('datasets') or {})
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
    check_losses(train_opt, opt.get('model_type'))
    check_loggers(opt)
    logger_opt = opt.get('logger') or {}
    _positive_integer(logger_opt, 'print_freq', 'logger', required=True)
    _positive_integer(logger_opt, 'save_checkpoint_freq', 'logger', required=True)
    if opt.get('val') is not None:
        _positive_integer(opt['val'], 'val_freq', 'val', required=True)
    train_set = (opt.get('datasets') or {}).get('train')
    if not isinstance(train_set, dict):
        raise OptionsError('datasets:train is missing: basicsr train needs a training dataset')
    check_training_set(train_set, opt.get('scale'), world_size)


def check_experiment_name(name: object) -> None:
    """``name`` must be one safe path component: BasicSR makes ``experiments/NAME`` (archiving an existing
    one), ``results/NAME`` and ``tb_logger/NAME`` from it, and names the wandb run after it.

    Raises:
        OptionsError: Not text, empty, or a path rather than one file name.
    """
    if not isinstance(name, str) or not name.strip():
        raise OptionsError(f'name must be a non-empty text (the experiment folder name); got {name!r}')
    problem = component_problem(name)
    if problem:
        raise OptionsError(f'name {name!r} {problem}: it must be one folder name, as BasicSR makes experiments/NAME, '
                           'results/NAME and tb_logger/NAME from it')


def component_problem(text: str) -> str | None:
    """Why ``text`` cannot be used as one file or folder name inside a folder, or None when it can."""
    if text in ('.', '..'):
        return 'is a reference to a folder (. or ..)'
    if '/' in text or '\\' in text or ntpath.splitdrive(text)[0]:
        return 'is a path (it contains "/", "\\" or a drive)'
    if any(unicodedata.category(character) in ('Cc', 'Cs') for character in text):
        return 'contains a control character'
    if len(os.fsencode(text)) > MAX_NAME_BYTES:
        return f'is longer than {MAX_NAME_BYTES} bytes'
    return None


def check_basicsr_values(opt: dict, is_train: bool = True) -> None:
    """The values of :data:`BASICSR_VALUES` (those of training sections for training only).

    Raises:
        OptionsError: A value of the wrong type or out of range, with the option named.
    """
    for rule in BASICSR_VALUES:
        if not is_train and (rule.section or rule.key).split(':')[0] in TRAINING_SECTIONS:
            continue
        for where, section_opt in _sections(opt, rule.section.split(':') if rule.section else []):
            keys = [key for key in section_opt if fnmatch.fnmatchcase(str(key), rule.key)]
            if rule.required and not keys:
                keys = [rule.key]
            for key in keys:
                _check_value(section_opt.get(key), f'{where}{key}', rule)


def _sections(opt, levels, where='') -> Iterator[tuple[str, dict]]:
    """The mappings under ``opt`` whose keys match the patterns ``levels``, with their ``a:b:`` prefixes."""
    if not isinstance(opt, dict):
        return
    if not levels:
        yield where, opt
        return
    for key, value in opt.items():
        if fnmatch.fnmatchcase(str(key), levels[0]):
            yield from _sections(value, levels[1:], f'{where}{key}:')


def _check_value(value, where, rule: Value):
    if value is None:
        if rule.required:
            raise OptionsError(f'{where} is missing')
        return
    kind = rule.kind
    if kind in ('number', 'integer'):
        _check_number(value, where, minimum=rule.minimum, above=rule.above, below=rule.below, maximum=rule.maximum,
                      integer=kind == 'integer')
    elif kind == 'numbers':
        _numbers(value, where, rule)
    elif kind == 'choice' and value not in rule.choices:
        raise OptionsError(f'{where} must be one of {", ".join(rule.choices)}; got {value!r}')
    elif not isinstance(value, _TYPES.get(kind, object)):
        raise OptionsError(f'{where} must be {_DESCRIPTIONS[kind]}; got {value!r}')
    elif kind == 'component' and component_problem(value):
        raise OptionsError(f'{where} {value!r} {component_problem(value)}: BasicSR makes a file name of it')
    elif kind == 'template':
        _check_template(value, where)


_TYPES = {'text': str, 'component': str, 'template': str, 'switch': bool, 'mapping': dict}
_DESCRIPTIONS = {'text': 'a text', 'component': 'a text', 'template': 'a text with one {} (the file name)',
                 'switch': 'true or false', 'mapping': 'a mapping (key: value lines)'}


def _numbers(value, where, rule):
    if not isinstance(value, list) or (rule.length is not None and len(value) != rule.length):
        count = f'{rule.length} numbers' if rule.length else 'numbers'
        raise OptionsError(f'{where} must be a list of {count}, e.g. [{", ".join(["0.9"] * (rule.length or 2))}]; '
                           f'got {value!r}')
    for index, item in enumerate(value):
        _check_number(item, f'{where}[{index}]', minimum=rule.minimum, above=rule.above, below=rule.below,
                      maximum=rule.maximum)


def _check_template(template, where):
    """BasicSR formats ``filename_tmpl`` with one argument, the HR file's name."""
    import string

    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
        template.format('name')
    except (ValueError, IndexError, KeyError) as error:
        raise OptionsError(f'{where} {template!r} is not a file name template ({error}); write e.g. "{{}}x4"') from None
    if len(fields) != 1:
        raise OptionsError(f'{where} {template!r} must contain "{{}}" once (where the HR file name goes); '
                           f'it has {len(fields)}')


def check_prefetch(datasets: dict) -> None:
    """``prefetch_mode: cuda`` needs CUDA, and BasicSR wants ``pin_memory: true`` with it."""
    for phase, dataset in datasets.items():
        if not isinstance(dataset, dict) or dataset.get('prefetch_mode') != 'cuda':
            continue
        if not torch.cuda.is_available():
            raise OptionsError(f'datasets:{phase}:prefetch_mode is cuda but CUDA is not available on this machine: '
                               'use cpu or remove it')
        if dataset.get('pin_memory') is not True:
            raise OptionsError(f'datasets:{phase}:prefetch_mode cuda needs datasets:{phase}:pin_memory: true')


def check_loggers(opt: dict) -> None:
    """The loggers BasicSR starts (not in ``debug`` runs): wandb needs the tensorboard logger, each its package."""
    logger_opt = opt.get('logger') or {}
    if 'debug' in opt['name']:
        return
    wandb = (logger_opt.get('wandb') or {}).get('project') is not None
    if wandb and logger_opt.get('use_tb_logger') is not True:
        raise OptionsError('logger:wandb:project is set but logger:use_tb_logger is not true: BasicSR syncs wandb '
                           'from the tensorboard logger')
    for needed, package, option in ((wandb, 'wandb', 'wandb:project'),
                                     (logger_opt.get('use_tb_logger'), 'tensorboard', 'use_tb_logger')):
        if needed and importlib.util.find_spec(package) is None:
            raise OptionsError(f'logger:{option} is set but the {package} package is not installed: '
                               f'pip install {package}, or turn it off')


def unknown_keyword(cls: type, keys: list, where: str, type_name: str) -> None:
    """Refuse a key of ``keys`` that is not a keyword argument of ``cls`` (unless it takes ``**kwargs``).

    Raises:
        OptionsError: Naming the key, the closest known keyword and all of them.
    """
    parameters = inspect.signature(cls).parameters.values()
    if any(parameter.kind is parameter.VAR_KEYWORD for parameter in parameters):
        return
    named = [parameter.name for parameter in parameters
             if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)]
    for key in keys:
        if key not in named:
            close = difflib.get_close_matches(str(key), named, n=1)
            hint = f' (did you mean "{close[0]}"?)' if close else ''
            raise OptionsError(f'{where}:{key} is not an option of {type_name}{hint}; '
                               f'its options are: {", ".join(named)}')


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
        optimizer = getattr(torch.optim, str(optim_opt['type']), None)
        if known is not None and isinstance(optimizer, type):
            unknown_keyword(optimizer, [key for key in optim_opt if key not in ('type', 'lr')], where,
                            f'torch.optim.{optim_opt["type"]}')


def _optimizer_types(model_class):
    """Optimizer names ``model_class`` builds: BasicSR's base models only Adam, ESC's any of torch.optim."""
    from esc_arch.models.esc_model import ESCModel

    from basicsr.models.base_model import BaseModel

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


def check_losses(train_opt: dict, model_type: str | None = None) -> None:
    """Each ``train:*_opt`` loss section names a registered loss and only its keyword arguments; BasicSR's
    ``SRModel`` and the models built on it (not its GAN models) need a pixel or a perceptual loss."""
    from basicsr.models.sr_model import SRModel
    from basicsr.models.srgan_model import SRGANModel

    losses = dict(iter(LOSS_REGISTRY))
    for key, loss_opt in train_opt.items():
        if not key.endswith('_opt') or loss_opt is None:
            continue
        if not isinstance(loss_opt, dict) or 'type' not in loss_opt:
            raise OptionsError(f'train:{key} must be a mapping with a "type" (e.g. L1Loss)')
        loss_class = losses.get(str(loss_opt['type'])) or losses.get(f'{loss_opt["type"]}_basicsr')
        if loss_class is None:
            close = difflib.get_close_matches(str(loss_opt['type']), losses, n=1)
            hint = f'did you mean "{close[0]}"? ' if close else ''
            raise OptionsError(f'train:{key}:type: no loss named "{loss_opt["type"]}" is registered; {hint}'
                               f'registered: {", ".join(sorted(losses))}')
        unknown_keyword(loss_class, [name for name in loss_opt if name != 'type'], f'train:{key}', loss_opt['type'])
    model_class = dict(iter(MODEL_REGISTRY)).get(model_type)
    if (isinstance(model_class, type) and issubclass(model_class, SRModel) and not issubclass(model_class, SRGANModel)
            and not train_opt.get('pixel_opt') and not train_opt.get('perceptual_opt')):
        raise OptionsError(f'train:pixel_opt is not set: {model_type} trains with train:pixel_opt or '
                           'train:perceptual_opt; set one, e.g. pixel_opt: {type: L1Loss, loss_weight: 1.0}')


def check_training_set(dataset_opt: dict, scale: int | float, world_size: int) -> None:
    """Batch, worker, crop and enlargement values of ``datasets:train``, and at least one full batch."""
    where = 'datasets:train'
    _positive_integer(dataset_opt, 'batch_size_per_gpu', where, required=True)
    _integer(dataset_opt, 'num_worker_per_gpu', where, minimum=0)
    _number(dataset_opt, 'dataset_enlarge_ratio', where, above=0)
    if 'gt_size' in dataset_opt:
        _positive_integer(dataset_opt, 'gt_size', where)
        # The LR crop is gt_size // scale pixels and the network's output scale times that: any other gt_size
        # gives an output and an HR crop of different sizes, a loss traceback at the first iteration. ESC
        # itself needs no multiple of its window (its attention layers pad; tested in tests/test_option_values.py).
        if isinstance(scale, int) and scale > 0 and (dataset_opt['gt_size'] < scale or dataset_opt['gt_size'] % scale):
            raise OptionsError(f'{where}:gt_size ({dataset_opt["gt_size"]}) must be a multiple of scale ({scale}), '
                               f'e.g. {max(1, round(dataset_opt["gt_size"] / scale)) * scale}')
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
    from esc_arch.data import HROnlyBicubicDataset
    from esc_arch.errors import ESCError

    from basicsr.data.paired_image_dataset import PairedImageDataset

    cls = dict(iter(DATASET_REGISTRY)).get(dataset_opt.get('type'))
    if not (isinstance(cls, type) and issubclass(cls, (PairedImageDataset, HROnlyBicubicDataset))):
        return None
    try:
        return len(cls({**dataset_opt, 'phase': 'train', 'scale': scale}))
    except ESCError:
        raise
    except Exception:  # noqa: BLE001  (BasicSR reports it when it builds the dataset)
        return None


_BOUNDS = (('above', operator.le, 'greater than'), ('minimum', operator.lt, 'at least'),
           ('below', operator.ge, 'below'), ('maximum', operator.gt, 'at most'))


def _number(section_opt, key, where, required=False, above=None, minimum=None, below=None):
    value = section_opt.get(key)
    if value is None:
        if required:
            raise OptionsError(f'{where}:{key} is missing')
        return
    _check_number(value, f'{where}:{key}', above=above, minimum=minimum, below=below)


def _check_number(value, where, above=None, minimum=None, below=None, maximum=None, integer=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise OptionsError(f'{where} must be a {"whole " if integer else ""}number; got {value!r}'
                           + (' (write 1e-4 as 1.0e-4 or !!float 1e-4)' if isinstance(value, str) else ''))
    if integer and value != int(value):
        raise OptionsError(f'{where} must be a whole number; got {value}')
    bounds = {'above': above, 'minimum': minimum, 'below': below, 'maximum': maximum}
    for name, refuses, words in _BOUNDS:
        if bounds[name] is not None and refuses(value, bounds[name]):
            raise OptionsError(f'{where} must be {words} {bounds[name]}; got {value}')


def _integer(section_opt, key, where, required=False, minimum=None):
    _number(section_opt, key, where, required=required)
    if section_opt.get(key) is not None:
        _check_number(section_opt[key], f'{where}:{key}', minimum=minimum, integer=True)


def _positive_integer(section_opt, key, where, required=False):
    _integer(section_opt, key, where, required=required, minimum=1)
