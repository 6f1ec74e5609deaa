"""Shared by ``basicsr train`` and ``basicsr test``: BasicSR's own options, checked up front.

BasicSR's pipelines parse ``sys.argv`` themselves (``basicsr.utils.options.parse_options``);
this module declares the same options for ``--help``, checks what a user can get wrong
(options file, required sections, ``--force_yml`` entries, then :mod:`esc_arch.options_check`:
networks, scale, dataset and checkpoint paths) so that it is reported in one line before
anything is written, then hands the arguments to the pipeline with the current directory as
BasicSR's root (``experiments/``, ``results/`` and ``tb_logger/`` are created there). Errors
the pipeline raises for bad images, unfitting checkpoints or a diverged training are reported
in one line too.
"""
import os
import sys

from esc_arch.checkpoint import CheckpointError
from esc_arch.cli import CommandError
from esc_arch.compat.paired_dataset_errors import DatasetError
from esc_arch.models import NonFiniteLossError
from esc_arch.options_check import OptionsError, check_options, resumes_training

# Sections that BasicSR's pipelines read without checking for them.
COMMON_SECTIONS = ('name', 'model_type', 'num_gpu', 'datasets', 'path')
TRAIN_SECTIONS = COMMON_SECTIONS + ('train', 'logger')
TEST_SECTIONS = COMMON_SECTIONS + ('val', )
MAPPING_SECTIONS = ('datasets', 'path', 'train', 'logger', 'val')
# Raised by file access inside the pipelines, for paths taken from the options.
PATH_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)
# Raised inside the pipelines for bad data, a checkpoint that does not fit, or a diverged training.
USER_ERRORS = (CheckpointError, DatasetError, NonFiniteLossError)


def add_arguments(parser):
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


def read_options(path, sections):
    """Load a BasicSR options YAML, raising :class:`CommandError` for anything BasicSR would trip on.

    Args:
        path (str): The YAML file.
        sections (tuple[str]): Top-level keys the pipeline needs.

    Returns:
        dict: The options, as BasicSR's loader reads them.
    """
    import yaml
    from basicsr.utils.options import ordered_yaml

    if not os.path.isfile(path):
        raise CommandError(f'options file not found: {path}')
    try:
        with open(path, encoding='utf-8') as stream:
            options = yaml.load(stream, Loader=ordered_yaml()[0])
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise CommandError(f'cannot read {path} as YAML: {" ".join(str(error).split())}') from None
    if not isinstance(options, dict):
        raise CommandError(f'{path} is not a BasicSR options file (expected a mapping of options)')
    missing = [name for name in sections if name not in options]
    if missing:
        raise CommandError(f'{path} lacks required option(s): {", ".join(missing)}')
    for name in MAPPING_SECTIONS:
        if name in sections and not isinstance(options[name], dict):
            raise CommandError(f'{path}: option "{name}" must be a mapping')
    return options


def apply_overrides(options, entries, path):
    """Apply ``--force_yml`` entries to ``options`` as BasicSR will, checking them first.

    BasicSR applies ``KEY:SUBKEY=VALUE`` entries itself; doing the same here lets the checks
    below see the paths that will be used, and turns malformed entries into one-line errors.
    """
    from basicsr.utils.options import _postprocess_yml_value

    for entry in entries or ():
        if entry.count('=') != 1:
            raise CommandError(f'--force_yml entry "{entry}" is not of the form KEY:SUBKEY=VALUE')
        keys, value = (part.strip() for part in entry.split('='))
        keys = keys.split(':')
        node = options
        for depth, key in enumerate(keys[:-1]):
            if not isinstance(node, dict) or key not in node:
                raise CommandError(f'--force_yml entry "{entry}": {path} has no option {":".join(keys[:depth + 1])}')
            node = node[key]
        if not isinstance(node, dict):
            raise CommandError(f'--force_yml entry "{entry}": {":".join(keys[:-1])} is not a mapping')
        node[keys[-1]] = _postprocess_yml_value(value)


def original_message(error):
    """The message of ``error``; for one re-raised from a DataLoader worker, the worker's (its last line)."""
    lines = str(error).strip().splitlines() or [type(error).__name__]
    prefix = f'{type(error).__module__}.{type(error).__qualname__}: '
    return lines[-1].removeprefix(prefix)


def basicsr_argv(args):
    """The argument list that BasicSR's ``parse_options`` reads for ``args``."""
    argv = ['-opt', args.opt, '--launcher', args.launcher, '--local_rank', str(args.local_rank)]
    if args.auto_resume:
        argv.append('--auto_resume')
    if args.debug:
        argv.append('--debug')
    if args.force_yml:
        argv += ['--force_yml', *args.force_yml]
    return argv


def run(pipeline, args, sections, command):
    """Run a BasicSR pipeline (``train_pipeline`` / ``test_pipeline``) rooted at the current directory.

    Args:
        pipeline (callable): Takes BasicSR's ``root_path``.
        args (argparse.Namespace): Parsed :func:`add_arguments` options.
        sections (tuple[str]): Top-level option keys the pipeline needs.
        command (str): Subcommand name, recorded as the command line in the copied YAML.
    """
    options = read_options(args.opt, sections)
    apply_overrides(options, args.force_yml, args.opt)
    if args.debug and not str(options['name']).startswith('debug'):
        options['name'] = f'debug_{options["name"]}'  # as BasicSR's parse_options
    try:
        check_options(options, is_train=command == 'train',
                      resuming=command == 'train' and resumes_training(options, args.auto_resume))
    except OptionsError as error:
        raise CommandError(error) from None
    saved_argv = sys.argv
    sys.argv = [f'basicsr {command}'] + basicsr_argv(args)
    try:
        pipeline(os.getcwd())
    except PATH_ERRORS as error:
        if error.filename is None:
            raise
        raise CommandError(f'{error.strerror}: {error.filename}') from None
    except USER_ERRORS as error:
        raise CommandError(original_message(error)) from None
    finally:
        sys.argv = saved_argv
