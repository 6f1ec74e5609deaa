"""The ``basicsr`` console script: BasicSR's train/test entry points plus ESC's tools.

PyPI's basicsr ships no command; this one runs ``basicsr COMMAND [ARGS]``.

Adding a subcommand
-------------------
Add one line to :data:`COMMANDS`: ``'name': ('esc_arch.cli.module', 'one-line summary')``.
The module is imported only when its subcommand is named, so ``basicsr --help`` never pays
for it; its top-level imports are light (the standard library, :mod:`esc_arch.cli`,
:mod:`esc_arch.errors`, modules of constants), and torch, basicsr and the like are imported
inside ``run`` (``basicsr NAME --help`` starts in well under a second; tests/test_startup.py checks
it). It defines two functions:

``add_arguments(parser)``
    Declare the subcommand's arguments on ``parser``, an ``argparse.ArgumentParser``
    whose ``prog`` is ``basicsr NAME`` and whose description is the summary.
``run(args)``
    Do the work with the parsed ``argparse.Namespace``; return None (or 0) on success,
    or an int exit code.

Errors the user can cause are raised with a one-line message: by the library as one of the
:mod:`esc_arch.errors` classes (:class:`~esc_arch.errors.ESCError`), by a command for a problem
with its own arguments as :class:`CommandError`. The dispatcher prints either as
``basicsr NAME: error: MESSAGE`` on stderr and exits with code 2 (``USER_ERROR_EXIT_CODE``),
without a traceback (as argparse does for bad arguments). Any other exception is a bug and keeps
its traceback. ``python -m esc_arch.cli`` works like the ``basicsr`` script.
"""
import argparse
import importlib
import sys
from collections.abc import Sequence

from esc_arch.errors import USER_ERROR_EXIT_CODE, ESCError

__all__ = ['COMMANDS', 'CommandError', 'THREADED_COMMANDS', 'main']

COMMANDS = {
    'train': ('esc_arch.cli.train', "train with a BasicSR options YAML (BasicSR's train.py)"),
    'test': ('esc_arch.cli.test', "test with a BasicSR options YAML (BasicSR's test.py)"),
    'demo': ('esc_arch.cli.demo', 'make a small dataset, train ESC-light x4 on it and compare with bicubic'),
    'upscale': ('esc_arch.cli.upscale', 'upscale image files or a folder with a trained checkpoint'),
    'download': ('esc_arch.cli.download', "download the authors' weights and VGG19 (checked by content, resumable)"),
    'export-onnx': ('esc_arch.cli.export_onnx', 'export a network to ONNX and check it with onnxruntime'),
    'convert-weights': ('esc_arch.cli.convert_weights', 'convert weights: authors\' LTE checkpoint -> BasicSR .pth, '
                        '.pth <-> .safetensors'),
    'profile': ('esc_arch.cli.profile', "count a network's parameters and FLOPs for one image (paper's Table 2)"),
    'make-lr': ('esc_arch.cli.make_lr', 'make MATLAB-bicubic LR folders (X2/, X3/, ...) from HR images'),
    'extract-subimages': ('esc_arch.cli.extract_subimages', 'cut large training images into overlapping sub-images'),
    'make-lmdb': ('esc_arch.cli.make_lmdb', 'pack a folder of images into an LMDB (with meta_info.txt)'),
}

THREADED_COMMANDS = ('train', 'test', 'demo', 'upscale')
"""Commands whose work is CPU-bound: they run under :func:`esc_arch.threads.apply_thread_policy`."""

MEMORY_KEEPING_COMMANDS = ('test', 'upscale')
"""Inference commands: they run under :func:`esc_arch.allocator.keep_freed_memory` (freed blocks are reused)."""


class CommandError(Exception):
    """A problem with a command's own arguments (bad path, bad value); reported in one line, exit code 2.

    Only the commands in :mod:`esc_arch.cli` raise it; the library raises :mod:`esc_arch.errors` classes.
    """


def _parser(selected: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='basicsr',
        description='BasicSR commands with the ESC networks registered. '
        'Experiments, results and tb_logger folders go under the current directory.',
        epilog='Run "basicsr COMMAND --help" for the options of a command.')
    subparsers = parser.add_subparsers(dest='command', metavar='COMMAND', title='commands')
    for name, (module_name, summary) in COMMANDS.items():
        subparser = subparsers.add_parser(name, help=summary, description=summary)
        if name == selected:
            module = importlib.import_module(module_name)
            module.add_arguments(subparser)
            subparser.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``basicsr`` with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # The first word that is not an option names the command; only its module is imported.
    selected = next((word for word in argv if not word.startswith('-')), None)
    parser = _parser(selected)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return USER_ERROR_EXIT_CODE
    if args.command in THREADED_COMMANDS:
        from esc_arch.threads import apply_thread_policy

        # Before torch is imported (the commands import it in run), so that OpenMP's passive waits apply here too
        apply_thread_policy()
    if args.command in MEMORY_KEEPING_COMMANDS:
        from esc_arch.allocator import keep_freed_memory

        keep_freed_memory()
    from esc_arch.compat import command_patches, patched

    try:
        with patched(*command_patches(args.command)):  # esc_arch/compat/table.py: applied for the run
            return args.run(args) or 0
    except (CommandError, ESCError) as error:
        print(f'basicsr {args.command}: error: {error}', file=sys.stderr)
        return USER_ERROR_EXIT_CODE
    except KeyboardInterrupt:
        print(f'basicsr {args.command}: interrupted', file=sys.stderr)
        return 130
