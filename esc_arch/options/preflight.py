"""Every file a ``basicsr train``/``test`` run will read, checked before anything is built or written.

BasicSR finds a missing file when it first opens it: a missing VGG19 for the perceptual loss after both
networks were built and the experiment folder was made (two ``URLError`` tracebacks without network
access), a missing pyiqa weight file at the first validation. :func:`check_files` looks for all of them
up front and reports every missing one in one :class:`~esc_arch.errors.OptionsError`, each with the
command (or the training) that provides it:

* ``path:pretrain_network_*`` (not when the training resumes: BasicSR then loads the experiment's own
  checkpoints) and ``path:resume_state``: ``basicsr download NAME`` for the authors' released files, the
  training that writes it for a file under ``experiments/NAME/`` (found by its ``name:`` among the
  options files);
* the VGG weights of BasicSR's ``PerceptualLoss`` (any loss of that type under ``train``): BasicSR's
  ``VGGFeatureExtractor`` loads ``experiments/pretrained_models/vgg19-dcbb9e9d.pth`` when that file
  exists (relative to the current directory), else torchvision's weights of ``vgg_type`` from torch's
  hub cache (``$TORCH_HOME/hub/checkpoints``), downloading them if they are not there;
* the weight files of the ``calculate_pyiqa`` metrics under ``val:metrics`` (unless ``download: true``),
  when the run validates (``basicsr test``, or a training with a ``val*`` dataset);
* the dataset folders (``dataroot_*``) and list files (``meta_info_file``, and ``meta_info`` of the
  Real-ESRGAN datasets) of a ``disk`` backend, the ``dataroot_*`` LMDB folders of an ``lmdb`` one.

Only whether each file is there is checked here (cheap, nothing is read); what a file or folder must
hold is checked by :func:`esc_arch.options.check_options` and by the code that reads it.
"""
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from esc_arch.errors import OptionsError
from esc_arch.zoo import PRETRAINED_DIR, download_command, required_file_status

__all__ = ['MissingFile', 'check_files', 'missing_files']

BASICSR_VGG_FILE = os.path.join(PRETRAINED_DIR, 'vgg19-dcbb9e9d.pth')
"""The file BasicSR's ``VGGFeatureExtractor`` loads first (``basicsr/archs/vgg_arch.py``: ``VGG_PRETRAIN_PATH``)."""
_EXPERIMENT_FILE = re.compile(r'(?:^|/)experiments/(?P<name>[^/]+)/(?:models|training_states)/')
_DATASET_LISTS = ('meta_info_file', 'meta_info')


@dataclass(frozen=True)
class MissingFile:
    """A file a run needs that is not there.

    Args:
        option (str): The option that needs it, in ``--force_yml`` notation (``path:pretrain_network_g``).
        path (str): Where it is looked for (several places joined by `` or ``).
        provided_by (str): The command that provides it, or what to do.
    """
    option: str
    path: str
    provided_by: str

    def describe(self) -> str:
        """``OPTION not found: PATH -> WHAT PROVIDES IT``."""
        return f'{self.option} not found: {self.path} -> {self.provided_by}'


def missing_files(opt: dict, is_train: bool = True, resuming: bool = False) -> list[MissingFile]:
    """Every file the run of ``opt`` needs that is missing (see the module docstring), in the options' order.

    Sections that are not well-formed are skipped: :func:`~esc_arch.options.check_options` reports them.

    Args:
        opt (dict): The run's options (``--force_yml`` applied; for ``basicsr test``, test sets whose
            folders are missing already dropped).
        is_train (bool): Options of ``basicsr train`` rather than ``basicsr test``. Default: True.
        resuming (bool): The training resumes a saved state (:func:`~esc_arch.options.resumes_training`).
    """
    datasets = _mapping(opt.get('datasets'))
    validates = not is_train or any(str(phase).startswith('val') for phase in datasets)
    return [*_checkpoints(_mapping(opt.get('path')), is_train, resuming),
            *(_vgg_weights(_mapping(opt.get('train'))) if is_train else ()),
            *(_metric_weights(_mapping(_mapping(opt.get('val')).get('metrics'))) if validates else ()),
            *_dataset_files(datasets)]


def check_files(opt: dict, is_train: bool = True, resuming: bool = False) -> None:
    """Raise unless every file the run needs is there (:func:`missing_files`): one message lists them all.

    Raises:
        OptionsError: Files are missing, in one line: ``OPTION not found: PATH -> what provides it`` for
            one file; for several, their count, then each so, separated by ``; ``.
    """
    missing = missing_files(opt, is_train, resuming)
    where = f'relative paths start at the current directory, {os.getcwd()}'
    if len(missing) == 1:
        raise OptionsError(f'{missing[0].describe()} ({where})')
    if missing:
        listed = '; '.join(file.describe() for file in missing)
        raise OptionsError(f'{len(missing)} files this run needs are missing (nothing was created; {where}): {listed}')


def _mapping(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _checkpoints(path_opt: dict, is_train: bool, resuming: bool) -> Iterator[MissingFile]:
    """``path:pretrain_network_*`` (unless resuming) and, for training, ``path:resume_state``."""
    for key, value in path_opt.items():
        needed = (key == 'resume_state' and is_train) or (key.startswith('pretrain_network') and not resuming)
        if needed and isinstance(value, str) and value and not os.path.isfile(os.path.expanduser(value)):
            yield MissingFile(f'path:{key}', value, _checkpoint_source(value))


def _checkpoint_source(path: str) -> str:
    command = download_command(path)
    if command is not None:
        return command
    experiment = _EXPERIMENT_FILE.search(Path(path).as_posix())
    if experiment is None:
        return 'no command provides it: the weights of a training of yours, or a file you copy there (docs/weights.md)'
    name = experiment['name']
    options = training_options_named(name)
    if options is None:
        return f'written by the training whose options have "name: {name}" (basicsr train -opt THAT.yml)'
    return f'written by the training basicsr train -opt {options}'


def training_options_named(name: str) -> str | None:
    """The options file under ``options/`` (of the current directory) whose ``name:`` is ``name``; None if none.

    Read as text (a ``name:`` line at the top level), so that no options file is parsed or run.
    """
    pattern = re.compile(rf'^name:\s*[\'"]?{re.escape(name)}[\'"]?\s*(?:#.*)?$', re.MULTILINE)
    for path in sorted(Path('options').rglob('*.yml')):
        try:
            if pattern.search(path.read_text(encoding='utf-8', errors='replace')):
                return path.as_posix()
        except OSError:
            continue
    return None


def _vgg_weights(train_opt: dict) -> Iterator[MissingFile]:
    """The VGG weights of every ``PerceptualLoss`` under ``train``, where BasicSR's VGGFeatureExtractor reads them."""
    for key, loss in train_opt.items():
        if not (isinstance(loss, dict) and loss.get('type') == 'PerceptualLoss'):
            continue
        if os.path.isfile(BASICSR_VGG_FILE):  # BasicSR loads this one whatever the vgg_type
            continue
        vgg_type = loss.get('vgg_type', 'vgg19')
        option = f'train:{key} (PerceptualLoss, vgg_type {vgg_type})'
        if vgg_type == 'vgg19':
            status = required_file_status(['vgg19'])[0]
            if not status.present:
                yield MissingFile(option, ' or '.join(map(str, status.places)), status.command)
            continue
        hub_file = _torchvision_weights_file(vgg_type)
        if hub_file is not None and not hub_file.is_file():
            yield MissingFile(option, str(hub_file), f"torchvision's {vgg_type} ImageNet weights: no basicsr download "
                              'entry; copy the file there (torchvision downloads it there when it has network access)')


def _torchvision_weights_file(vgg_type: str) -> Path | None:
    """Where torchvision keeps the ImageNet weights that ``vgg_type(pretrained=True)`` loads; None if unknown."""
    from torchvision.models import get_model_weights

    from esc_arch.zoo import torch_hub_checkpoints

    try:
        weights = get_model_weights(vgg_type)['IMAGENET1K_V1']
    except (ValueError, KeyError):  # not a torchvision model: BasicSR's own error says so
        return None
    return torch_hub_checkpoints() / weights.url.rsplit('/', 1)[-1]


def _metric_weights(metrics: dict) -> Iterator[MissingFile]:
    """The weight files of the ``calculate_pyiqa`` metrics (those whose files esc_arch knows, without ``download``)."""
    for name, metric in metrics.items():
        if not (isinstance(metric, dict) and metric.get('type') == 'calculate_pyiqa') or metric.get('download'):
            continue
        from esc_arch.metrics import PAPER_METRICS, pyiqa_weight_files

        if metric.get('metric') not in PAPER_METRICS:  # check_options names the metrics whose files are known
            continue
        for file in pyiqa_weight_files([metric['metric']]):
            if not file.present:
                yield MissingFile(f'val:metrics:{name} (pyiqa {file.metric})', str(file.path),
                                  'copy it there from its publisher, or set download: true under this metric to let '
                                  'pyiqa fetch it')


def _dataset_files(datasets: dict) -> Iterator[MissingFile]:
    """The folders and list files of each dataset (``dataroot_*``, ``meta_info_file``, ``meta_info``)."""
    for phase, dataset in datasets.items():
        if not isinstance(dataset, dict):
            continue
        backend = _mapping(dataset.get('io_backend')).get('type', 'disk')
        for key, value in dataset.items():
            if not isinstance(value, str) or not value:
                continue
            if key.startswith('dataroot') and not os.path.exists(os.path.expanduser(value)):
                yield MissingFile(f'datasets:{phase}:{key}', value, _dataset_source(value))
            elif key in _DATASET_LISTS and backend == 'disk' and not os.path.isfile(os.path.expanduser(value)):
                yield MissingFile(f'datasets:{phase}:{key}', value, 'a list of the images, one per line (basicsr '
                                  'make-lmdb writes one as meta_info.txt; docs/data.md)')


def _dataset_source(path: str) -> str:
    """The data command that makes a dataset folder named like ``path`` (by BasicSR's naming), else the docs."""
    name = Path(path).as_posix()
    if name.rstrip('/').endswith('.lmdb'):
        return 'basicsr make-lmdb -i IMAGES -o ' + path + ' (docs/data.md)'
    if '_sub' in Path(name).name:
        return 'basicsr extract-subimages -i IMAGES -o ' + path + ' (docs/data.md)'
    if 'LR_bicubic' in name:
        return 'basicsr make-lr -i HR_IMAGES -o ' + name.split('LR_bicubic')[0] + 'LR_bicubic (docs/data.md)'
    return 'the dataset: download it (docs/data.md)'
