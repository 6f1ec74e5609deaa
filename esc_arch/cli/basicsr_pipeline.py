"""Shared by ``basicsr train`` and ``basicsr test``: BasicSR's own options, checked up front.

BasicSR's pipelines parse ``sys.argv`` themselves (``basicsr.utils.options.parse_options``);
this module declares the same options for ``--help``, checks what a user can get wrong
(options file read safely, required sections, ``--force_yml`` entries, then :mod:`esc_arch.options.checks`:
networks, scale, dataset and checkpoint paths) so that it is reported in one line before
anything is written, then hands the arguments to the pipeline with the current directory as
BasicSR's root (``experiments/``, ``results/`` and ``tb_logger/`` are created there). Errors
the pipeline raises for bad images, unfitting checkpoints or a diverged training are reported
in one line too.
"""
import argparse
import contextlib
import errno
import os
import sys
from collections.abc import Callable

from esc_arch.cli import CommandError
from esc_arch.compat import Patch, basicsr_patches, patched
from esc_arch.errors import ESCError, OutputError, TrainingError
from esc_arch.models.experiment_lock import experiment_lock
from esc_arch.options import check_options, resumes_training
from esc_arch.options.values import check_launcher
from esc_arch.options.loading import apply_overrides, basicsr_argv, load_pipeline_options
from esc_arch.options.test_sets import drop_missing_test_sets

# Raised by file access inside the pipelines, for paths taken from the options.
PATH_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)
# Raised when the experiment or results folder cannot be written: disk full, quota, read-only, no permission.
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """BasicSR's command-line options (``basicsr/utils/options.py``)."""
    parser.add_argument('-opt', required=True, metavar='YML', help='BasicSR options YAML file')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none',
                        help='job launcher for multi-process runs (default: none)')
    parser.add_argument('--auto_resume', action='store_true',
                        help="resume from the experiment's latest training state, if any")
    parser.add_argument('--debug', action='store_true', help='debug mode (prefixes the name with debug_)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0, help='set by launchers')
    parser.add_argument('--force_yml', nargs='+', default=None, metavar='KEY=VALUE',
                        help='override options, e.g. train:ema_decay=0.999 datasets:train:batch_size_per_gpu=4')


def original_message(error: BaseException) -> str:
    """The message of ``error``; for one re-raised from a DataLoader worker, the worker's (its last line)."""
    lines = str(error).strip().splitlines() or [type(error).__name__]
    prefix = f'{type(error).__module__}.{type(error).__qualname__}: '
    return lines[-1].removeprefix(prefix)


def run(pipeline: Callable[[str], None], args: argparse.Namespace, sections: tuple[str, ...],
        command: str) -> None:
    """Run a BasicSR pipeline (``train_pipeline`` / ``test_pipeline``) rooted at the current directory.

    Args:
        pipeline (callable): Takes BasicSR's ``root_path``.
        args (argparse.Namespace): Parsed :func:`add_arguments` options.
        sections (tuple[str]): Top-level option keys the pipeline needs.
        command (str): Subcommand name, recorded as the command line in the copied YAML.
    """
    options = load_pipeline_options(args.opt, sections)
    apply_overrides(options, args.force_yml, args.opt)
    if args.debug and not str(options['name']).startswith('debug'):
        options['name'] = f'debug_{options["name"]}'  # as BasicSR's parse_options
    if command == 'test':
        for notice in drop_missing_test_sets(options):
            print(f'basicsr test: {notice}', file=sys.stderr)
    world_size = check_launcher(args.launcher)
    check_options(options, is_train=command == 'train',
                  resuming=command == 'train' and resumes_training(options, args.auto_resume), world_size=world_size)
    argv = Patch(name='basicsr-argv', target='sys:argv',
                 replacement=lambda original: [f'basicsr {command}'] + basicsr_argv(args),
                 reason="BasicSR's pipelines parse sys.argv themselves", versions='basicsr 1.4.2')
    patches = [*basicsr_patches(), argv]  # undone after the run, for callers of main() in-process
    if command == 'train':
        patches.append(NO_EMPTY_TRAINING)
    if command == 'test' and not options['path'].get('pretrain_network_g'):
        patches.append(UNTRAINED_WEIGHTS_WARNING)
    # One run per experiment (results) folder, taken before BasicSR archives an existing one.
    folder = os.path.join('experiments' if command == 'train' else 'results', options['name'])
    lock = experiment_lock(folder) if first_process(args.launcher) else contextlib.nullcontext()
    try:
        with lock, patched(*patches):
            pipeline(os.getcwd())
    except ESCError as error:  # bad data, a checkpoint that does not fit, a diverged training
        raise type(error)(original_message(error)) from None
    except OSError as error:
        if isinstance(error, PATH_ERRORS) and error.filename is not None:
            raise CommandError(f'{error.strerror}: {error.filename}') from None
        if error.errno in DISK_ERRORS:
            where = f': {error.filename}' if error.filename else f' while writing under {os.getcwd()}'
            raise OutputError(f'{error.strerror}{where}') from None
        raise


def first_process(launcher: str) -> bool:
    """Whether this is the first (or only) process of the run: the one that takes the experiment lock."""
    rank = {'pytorch': 'RANK', 'slurm': 'SLURM_PROCID'}.get(launcher)
    return rank is None or os.environ.get(rank, '0') == '0'


def _warn_before_building(build_model: Callable[[dict], object]) -> Callable[[dict], object]:

    def build_model_after_warning(opt):
        from basicsr.utils import get_root_logger

        get_root_logger().warning('path:pretrain_network_g is not set: testing a network with random weights '
                                  '(set it to a trained checkpoint to measure a trained model).')
        return build_model(opt)

    return build_model_after_warning


UNTRAINED_WEIGHTS_WARNING = Patch(
    name='untrained-weights-warning', target='basicsr.test:build_model', replacement=_warn_before_building,
    reason='basicsr test scores a network with random weights when no checkpoint is given, without a word',
    versions='basicsr 1.4.2')
"""Applied by ``basicsr test`` without ``path:pretrain_network_g``: a WARNING on stderr and in the log."""


def _refuse_empty_training(create_loaders: Callable) -> Callable:

    def create_loaders_refusing_empty_epochs(opt, logger):
        loaders = create_loaders(opt, logger)
        if loaders[0] is not None and len(loaders[0]) == 0:
            raise TrainingError(f'datasets:train gives no full batch of batch_size_per_gpu '
                                f'{opt["datasets"]["train"]["batch_size_per_gpu"]} per epoch: BasicSR drops incomplete '
                                'batches, so no iteration would run; lower batch_size_per_gpu or raise '
                                'dataset_enlarge_ratio')
        return loaders

    return create_loaders_refusing_empty_epochs


NO_EMPTY_TRAINING = Patch(
    name='no-empty-training', target='basicsr.train:create_train_val_dataloader', replacement=_refuse_empty_training,
    reason='basicsr trains 0 iterations and exits as if it had trained when the training set is smaller than a batch',
    versions='basicsr 1.4.2')
"""Applied by ``basicsr train``: the check of :mod:`esc_arch.options.values` for dataset types it cannot count."""
