"""Shared by ``basicsr train`` and ``basicsr test``: BasicSR's own options, checked up front.

This module declares BasicSR's command-line options for ``--help``, reads the run's options once
(:func:`~esc_arch.options.loading.read_run_options`: file read safely, required sections,
``--force_yml`` entries), lists every file the run needs that is missing
(:mod:`esc_arch.options.preflight`: checkpoints, VGG and metric weights, datasets) in one message, checks
what else a user can get wrong (:mod:`esc_arch.options.checks`: networks, scale, values), all before
anything is written, then runs the pipeline on those options (BasicSR's patched ``parse_options`` takes them) with the
current directory as BasicSR's root (``experiments/``, ``results/`` and ``tb_logger/`` are created
there). The patches of :mod:`esc_arch.compat.table` are in place (``esc_arch.cli.main`` applies
them); two of their replacements, for ``train`` and ``test``, are at the end of this module. Errors the
pipeline raises for bad images, unfitting checkpoints or a diverged training are reported in one
line too.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from esc_arch.cli import CommandError
from esc_arch.errors import ESCError, OutputError, TrainingError

if TYPE_CHECKING:
    import logging

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


def run(pipeline: Callable[[str], None], args: argparse.Namespace, command: str) -> None:
    """Run a BasicSR pipeline (``train_pipeline`` / ``test_pipeline``) rooted at the current directory.

    Args:
        pipeline (callable): Takes BasicSR's ``root_path``.
        args (argparse.Namespace): Parsed :func:`add_arguments` options.
        command (str): ``'train'`` or ``'test'``.
    """
    from esc_arch.options import check_options, resumes_training
    from esc_arch.options.loading import prepared_options, read_run_options
    from esc_arch.options.preflight import check_files
    from esc_arch.options.test_sets import drop_missing_test_sets
    from esc_arch.options.values import check_launcher
    from esc_arch.runs.experiment_lock import experiment_lock

    options = read_run_options(args, is_train=command == 'train')
    if command == 'test':
        for notice in drop_missing_test_sets(options):
            print(f'basicsr test: {notice}', file=sys.stderr)
    world_size = check_launcher(args.launcher)
    resuming = command == 'train' and resumes_training(options, args.auto_resume)
    check_files(options, is_train=command == 'train', resuming=resuming)  # every missing file, in one message
    check_options(options, is_train=command == 'train', resuming=resuming, world_size=world_size)
    # One run per experiment (results) folder, taken before BasicSR archives an existing one.
    folder = os.path.join('experiments' if command == 'train' else 'results', options['name'])
    lock = experiment_lock(folder) if first_process(args.launcher) else contextlib.nullcontext()
    try:
        with lock, prepared_options(options, args):
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


def warn_before_building_untrained(build_model: Callable[[dict], object]) -> Callable[[dict], object]:
    """Patch ``untrained-weights-warning``: a WARNING (stderr and log) when no checkpoint is given."""

    def build_model_warning_if_untrained(opt: dict) -> object:
        from basicsr.utils import get_root_logger

        if not (opt.get('path') or {}).get('pretrain_network_g'):
            get_root_logger().warning('path:pretrain_network_g is not set: testing a network with random weights '
                                      '(set it to a trained checkpoint to measure a trained model).')
        return build_model(opt)

    return build_model_warning_if_untrained


def checked_train_dataloaders(create_loaders: Callable) -> Callable:
    """Patch ``checked-train-dataloaders``: refuse a training set without one full batch (BasicSR would train
    0 iterations and exit as if it had trained), and hand the training sampler and loader to the stop-signal
    handling."""

    def create_checked_loaders(opt: dict, logger: logging.Logger) -> tuple:
        from esc_arch.runs.stop_signals import follow_training_sampler, start_workers_with_sigterm_blocked

        loaders = create_loaders(opt, logger)
        if loaders[0] is not None and len(loaders[0]) == 0:
            raise TrainingError(f'datasets:train gives no full batch of batch_size_per_gpu '
                                f'{opt["datasets"]["train"]["batch_size_per_gpu"]} per epoch: BasicSR drops incomplete '
                                'batches, so no iteration would run; lower batch_size_per_gpu or raise '
                                'dataset_enlarge_ratio')
        follow_training_sampler(loaders[1])
        if loaders[0] is not None:
            start_workers_with_sigterm_blocked(loaders[0])
        return loaders

    return create_checked_loaders
