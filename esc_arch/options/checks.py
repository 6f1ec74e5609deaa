"""Check BasicSR options before anything is built or written.

BasicSR discovers most mistakes in an options file late: a misspelled ``network_g`` key is a
``TypeError`` from deep inside ``build_network``, a missing dataset folder surfaces only after the
experiment folders were made (and an earlier experiment of the same name archived), a ``scale``
that differs from the network's ends in a loss of mismatched shapes. :func:`check_options` finds
these first and raises :class:`OptionsError` with one line that names the option in BasicSR's
``--force_yml`` notation (``datasets:train:dataroot_gt``).
"""
import difflib
import inspect
import os
from os import path as osp

import torch

from esc_arch.archs.factory import create_network
from esc_arch.archs.introspection import SCALE_ATTRIBUTES
from esc_arch.data.lmdb_checks import check_lmdb
from esc_arch.errors import OptionsError
from esc_arch.options.values import check_basicsr_values, check_experiment_name, check_values, unknown_keyword

from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, MODEL_REGISTRY, Registry


def check_options(opt: dict, is_train: bool = True, resuming: bool = False, world_size: int = 1) -> None:
    """Check BasicSR options (as loaded from YAML, ``--force_yml`` applied) for what users get wrong.

    Checked first: ``name`` is one folder name (:func:`~esc_arch.options.values.check_experiment_name`) and
    BasicSR's own values have their types and ranges (:func:`~esc_arch.options.values.check_basicsr_values`).
    Then ``model_type``, every ``network_*`` section (registered type, known keys, values the
    network accepts), ``scale`` against the network's upscaling factor, every dataset (registered
    type, phase, folders, files it points to, and each LMDB whole with the keys it lists:
    :func:`esc_arch.data.lmdb_checks.check_lmdb`) and the checkpoint paths under ``path``.
    Relative paths are taken from the current directory, as BasicSR does.

    Args:
        opt (dict): The options.
        is_train (bool): Options for ``basicsr train`` (datasets ``train`` and ``val*`` only) rather
            than ``basicsr test``. Default: True.
        resuming (bool): The training resumes a saved state (see :func:`resumes_training`), so BasicSR
            replaces ``path:pretrain_network_*`` by the experiment's own checkpoints. A training with
            ``path:resume_state`` set resumes anyway; ``basicsr test`` never does. Default: False.
        world_size (int): Number of training processes (``--launcher``, see
            :func:`esc_arch.options.values.check_launcher`). Default: 1.

    Then the values (:func:`esc_arch.options.values.check_values`: types, ranges, GPUs, optimizers,
    schedulers, losses, misspelt keys, and a training set that gives at least one batch).

    Raises:
        OptionsError: The first problem found.
        DatasetError: An LMDB is damaged or lists keys it lacks; LR and HR LMDBs of a paired dataset differ.
        TrainingError: The training would run no iteration.
    """
    check_experiment_name(opt.get('name'))
    check_basicsr_values(opt, is_train)
    if 'model_type' in opt:
        registered(MODEL_REGISTRY, opt['model_type'], 'model_type')
    network_parameters = {}
    for section, network_opt in opt.items():
        if section.startswith('network_'):
            network_parameters[section] = check_network(network_opt, section)
    if 'network_g' in network_parameters:
        check_scale(opt, network_parameters['network_g'])
    check_datasets(opt.get('datasets') or {}, is_train)
    path_opt = opt.get('path') or {}
    check_checkpoint_paths(path_opt, is_train and (resuming or bool(path_opt.get('resume_state'))), is_train)
    check_values(opt, is_train, world_size)


def resumes_training(opt: dict, auto_resume: bool) -> bool:
    """Whether ``basicsr train`` will resume a saved training state rather than start afresh.

    As BasicSR's ``load_resume_state`` (with :mod:`esc_arch.compat.resume`): ``path:resume_state``
    is set, or ``--auto_resume`` finds a state in ``experiments/<name>/training_states`` under the
    current directory. Without one, ``--auto_resume`` starts from ``path:pretrain_network_*``.

    Args:
        opt (dict): The options (with the name BasicSR will use: ``--debug`` prefixes ``debug_``).
        auto_resume (bool): ``--auto_resume`` was given.
    """
    from esc_arch.compat.resume import latest_training_state

    check_experiment_name(opt.get('name'))  # before looking into experiments/NAME
    if (opt.get('path') or {}).get('resume_state'):
        return True
    state_dir = osp.join('experiments', str(opt.get('name')), 'training_states')
    return bool(auto_resume) and latest_training_state(state_dir) is not None


def registered(registry: Registry, name: str, option: str) -> object:
    """The object registered as ``name``, or an :class:`OptionsError` suggesting the closest name."""
    if not isinstance(name, str):
        raise OptionsError(f'{option} must be the name of a registered {registry._name} type; got {name!r}')
    objects = dict(iter(registry))
    for key in (name, f'{name}_basicsr'):  # the names Registry.get accepts (it prints when falling back)
        if key in objects:
            return objects[key]
    close = difflib.get_close_matches(str(name), objects, n=1)
    hint = f'did you mean "{close[0]}"? ' if close else ''
    raise OptionsError(f'{option}: no {registry._name} type named "{name}" is registered; {hint}'
                       f'registered: {", ".join(sorted(objects))}')


def constructor_parameters(cls: type) -> tuple[dict[str, inspect.Parameter], bool]:
    """The named keyword arguments of ``cls``, and whether it takes any other keyword (``**kwargs``)."""
    parameters = inspect.signature(cls).parameters.values()
    named = {
        parameter.name: parameter
        for parameter in parameters if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
    }
    return named, any(parameter.kind is parameter.VAR_KEYWORD for parameter in parameters)


def check_network(network_opt: dict, section: str) -> dict[str, inspect.Parameter]:
    """Check a ``network_*`` section: its type, its keys (against the constructor) and, for the ESC
    networks, their values. Returns the constructor's named parameters (:func:`constructor_parameters`).

    The ESC networks check their arguments when built; they are built here on the ``meta`` device (no
    memory, no weights) so that those checks report before the datasets are built. Other networks
    are not built: their constructors may have side effects (loading or downloading weights).
    """
    if not isinstance(network_opt, dict) or 'type' not in network_opt:
        raise OptionsError(f'{section} must be a mapping with a "type" (the network class)')
    type_name = network_opt['type']
    cls = registered(ARCH_REGISTRY, type_name, f'{section}:type')
    parameters, _ = constructor_parameters(cls)
    arguments = {key: value for key, value in network_opt.items() if key != 'type'}
    unknown_keyword(cls, list(arguments), section, type_name)
    missing = [name for name, parameter in parameters.items()
               if parameter.default is parameter.empty and name not in arguments]
    if missing:
        raise OptionsError(f'{section} lacks {", ".join(missing)}, required by {type_name}')
    if cls.__module__.startswith('esc_arch.'):
        with torch.device('meta'):
            network = create_network(network_opt, section)
        check_network_size(network, f'{section} ({type_name})')
    return parameters


def check_network_size(network: torch.nn.Module, where: str) -> None:
    """Refuse a network whose weights alone would not fit in this machine's memory (BasicSR builds every
    network in memory first): a typo such as ``dim: 100000`` is an allocation traceback otherwise."""
    try:
        memory = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
    except (AttributeError, ValueError, OSError):  # not available on this system: nothing to compare with
        return
    tensors = [*network.parameters(), *network.buffers()]
    weight_bytes = sum(tensor.numel() * tensor.element_size() for tensor in tensors)
    if weight_bytes > memory:
        raise OptionsError(f'{where}: its {sum(tensor.numel() for tensor in tensors):,} weights need '
                           f'{weight_bytes / 1e9:.1f} GB, more than the {memory / 1e9:.1f} GB of memory of this '
                           'machine; check its sizes (dim, n_blocks, ...)')


def check_scale(opt: dict, parameters: dict[str, inspect.Parameter]) -> None:
    """``scale`` must exist and equal ``network_g``'s upscaling factor (given or default), when it has one.

    Args:
        opt (dict): The options, with a checked ``network_g``.
        parameters (dict): The named parameters of ``network_g``'s class, as :func:`check_network` returns.
    """
    network_opt = opt['network_g']
    for name in SCALE_ATTRIBUTES:
        if name not in parameters:
            continue
        given = name in network_opt
        factor = network_opt[name] if given else parameters[name].default
        if factor is inspect.Parameter.empty:
            return
        where = f'network_g:{name} is {factor}' + ('' if given else f', the default of {network_opt["type"]}')
        if 'scale' not in opt:
            raise OptionsError(f'scale is missing; {where}: add "scale: {factor}" at the top level')
        if opt['scale'] != factor:
            raise OptionsError(f'scale is {opt["scale"]} but {where}: the datasets and the network must use one scale')
        return


def check_datasets(datasets: dict, is_train: bool) -> None:
    """Check each dataset: its phase, registered type, and the folders, LMDBs and files it reads."""
    from basicsr.data.paired_image_dataset import PairedImageDataset

    for phase, dataset in datasets.items():
        where = f'datasets:{phase}'
        if not isinstance(dataset, dict):
            raise OptionsError(f'{where} must be a mapping')
        if is_train and phase != 'train' and phase.split('_')[0] != 'val':
            raise OptionsError(f'{where}: basicsr train uses only the datasets "train" and "val" (or "val_*")')
        if 'type' not in dataset:
            raise OptionsError(f'{where} lacks "type" (e.g. PairedImageDataset)')
        dataset_class = registered(DATASET_REGISTRY, dataset['type'], f'{where}:type')
        backend = (dataset.get('io_backend') or {}).get('type', 'disk')
        lmdb_keys = {key: check_dataset_folder(value, backend, f'{where}:{key}')
                     for key, value in dataset.items() if key.startswith('dataroot') and isinstance(value, str)}
        if issubclass(dataset_class, PairedImageDataset) and {'dataroot_gt', 'dataroot_lq'} <= lmdb_keys.keys():
            check_paired_keys(lmdb_keys['dataroot_lq'], lmdb_keys['dataroot_gt'], where)
        if backend == 'disk' and isinstance(dataset.get('meta_info_file'), str):
            meta_info = dataset['meta_info_file']
            if not osp.isfile(osp.expanduser(meta_info)):
                raise OptionsError(_not_found(f'{where}:meta_info_file', meta_info))


def check_paired_keys(lq_keys: set[str] | None, gt_keys: set[str] | None, where: str) -> None:
    """BasicSR pairs the images of two LMDBs by key, and stops when the key sets differ."""
    if lq_keys is None or gt_keys is None or lq_keys == gt_keys:
        return
    only_lq, only_gt = sorted(lq_keys - gt_keys), sorted(gt_keys - lq_keys)
    example = f'"{only_lq[0]}" only in dataroot_lq' if only_lq else f'"{only_gt[0]}" only in dataroot_gt'
    raise OptionsError(f'{where}: the LMDBs of dataroot_lq and dataroot_gt list different keys ({len(only_lq)} '
                       f'only in dataroot_lq, {len(only_gt)} only in dataroot_gt; e.g. {example}); '
                       'BasicSR pairs them by key')


def check_dataset_folder(folder: str, backend: str, option: str) -> set[str] | None:
    """A ``disk`` dataset root must be a folder that is not empty; an ``lmdb`` one a whole BasicSR LMDB,
    whose listed keys are returned."""
    expanded = osp.expanduser(folder)
    if not osp.isdir(expanded):
        raise OptionsError(_not_found(option, folder) if not osp.exists(expanded) else
                           f'{option}: {folder} is a file; a folder is expected')
    if backend == 'lmdb':
        if not folder.rstrip('/').endswith('.lmdb'):
            raise OptionsError(f'{option}: {folder} is read as an LMDB (io_backend type lmdb), '
                               'but BasicSR LMDB folders are named *.lmdb')
        return check_lmdb(expanded, option)
    if backend == 'disk':
        with os.scandir(expanded) as entries:
            if next(entries, None) is None:
                raise OptionsError(f'{option}: folder {folder} is empty')
    return None


def check_checkpoint_paths(path_opt: dict, resuming: bool, is_train: bool = True) -> None:
    """``path:resume_state`` (read by training only) and, unless resuming, ``path:pretrain_network_*``
    must be existing files."""
    for key, value in path_opt.items():
        if not value or not isinstance(value, str):
            continue
        if (key == 'resume_state' and is_train) or (key.startswith('pretrain_network') and not resuming):
            if not osp.isfile(osp.expanduser(value)):
                raise OptionsError(_not_found(f'path:{key}', value))


def _not_found(option, location):
    return f'{option} not found: {location} (relative paths start at the current directory, {os.getcwd()})'
