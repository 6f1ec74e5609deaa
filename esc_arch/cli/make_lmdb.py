"""``basicsr make-lmdb``: pack a folder of images into an LMDB for BasicSR's ``io_backend: lmdb``.

The LMDB has the layout of BasicSR's :func:`basicsr.utils.lmdb_util.make_lmdb_from_imgs`: PNG-encoded
images under keys = file names without extension, and ``meta_info.txt`` beside the data. Images are
read as the other commands read them (size checked before decoding, EXIF orientation applied as
training from a folder does); every unusable image is reported and nothing is written then.

The LMDB is built beside ``--output`` as a hidden ``.NAME.partial.lmdb`` and renamed when complete;
an interruption (Ctrl-C, SIGTERM) or a write error removes it. An existing ``--output`` is replaced
only with ``--overwrite`` and only if it is an LMDB (a folder holding nothing but ``data.mdb``,
``lock.mdb`` and ``meta_info.txt``); an output that is, contains or lies inside the input folder is refused.
"""
import argparse
import os
import shutil
from contextlib import nullcontext
from functools import partial

from esc_arch.cli import CommandError
from esc_arch.cli.image_folders import (
    add_max_pixels_argument,
    add_workers_argument,
    failure_report,
    print_notice,
    sigterm_as_interrupt,
    worker_pool,
)
from esc_arch.errors import ESCError, OutputError
from esc_arch.images import list_images


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('-i', '--input', required=True,
                        help='folder of images (e.g. datasets/DIV2K/DIV2K_train_HR_sub)')
    parser.add_argument('-o', '--output', required=True, help='LMDB folder to create, ending in .lmdb')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace an existing LMDB at --output (only an LMDB: data.mdb, lock.mdb, meta_info.txt)')
    parser.add_argument('--compress-level', type=int, default=1, choices=range(10), metavar='0-9',
                        help='PNG compression of the stored images (default: 1, as BasicSR)')
    add_max_pixels_argument(parser)
    add_workers_argument(parser)


def _keys(names: list[str], folder: str) -> list[str]:
    keys = [os.path.splitext(name)[0] for name in names]
    for name, key in zip(names, keys):
        if not key.isascii() or ' ' in key:
            raise CommandError(f'{os.path.join(folder, name)}: LMDB keys must be ASCII without spaces; rename the file')
    if len(set(keys)) != len(keys):
        duplicate = next(key for key in keys if keys.count(key) > 1)
        raise CommandError(f'{folder} holds several images named {duplicate}.* (LMDB keys must be unique)')
    return keys


def _input_bytes(folder: str, names: list[str]) -> int:
    return sum(os.path.getsize(os.path.join(folder, name)) for name in names)


def check_free_space(folder: str, output: str, input_bytes: int) -> None:
    """Refuse to start on a disk without room for about the inputs' size: LMDB reads its file through a memory
    map, and a write that failed for lack of space can then crash the process (SIGBUS) instead of raising."""
    free, needed = shutil.disk_usage(folder).free, input_bytes + 2**20
    if free < needed:
        raise OutputError(f'not enough free space for {output}: {free / 2**20:.1f} MiB free, about '
                          f'{needed / 2**20:.1f} MiB needed')


def _is_within(path: str, folder: str) -> bool:
    return os.path.commonpath([path, folder]) == folder


def check_paths(input_folder: str, output: str) -> None:
    """Refuse an output that is, contains or lies inside the input folder (replacing it would delete images)."""
    real_input, real_output = os.path.realpath(input_folder), os.path.realpath(output)
    if _is_within(real_input, real_output):
        relation = 'is' if real_input == real_output else 'contains'
        raise OutputError(f'--output {output} {relation} the input folder {input_folder}; choose an output outside it')
    if _is_within(real_output, real_input):
        raise OutputError(f'--output {output} is inside the input folder {input_folder}; choose an output outside it')


def check_replaceable(output: str) -> None:
    """Refuse to replace anything but an LMDB: nothing except LMDB files may be deleted."""
    from esc_arch.data.lmdb_packing import LMDB_FILES

    entries = sorted(os.listdir(output))
    foreign = [name for name in entries if name not in LMDB_FILES]
    if foreign or 'data.mdb' not in entries:
        found = f'it holds {", ".join(foreign[:3])}' if foreign else 'it has no data.mdb'
        raise OutputError(f'--output: {output} is not an LMDB ({found}); --overwrite only replaces an LMDB '
                          f'({", ".join(LMDB_FILES)}): choose another name')


def check_output(args: argparse.Namespace) -> str:
    """The normalised ``--output``, once it is known that it may be written (or replaced, with ``--overwrite``)."""
    output = os.path.normpath(args.output)
    if not output.endswith('.lmdb'):
        raise CommandError(f'--output must end with .lmdb (BasicSR recognises LMDBs by it); got {args.output}')
    if os.path.exists(output) and not os.path.isdir(output):
        raise CommandError(f'--output: {output} exists and is not a folder (an LMDB is a folder); choose another name')
    if os.path.exists(args.input):
        check_paths(args.input, output)
    if os.path.exists(output) and not args.overwrite:
        raise CommandError(f'--output: {output} already exists; pass --overwrite to replace it')
    if os.path.exists(output):
        check_replaceable(output)
    return output


def run(args: argparse.Namespace) -> None:
    import lmdb

    from esc_arch.data.lmdb_packing import encode_entry, lmdb_map_size, write_lmdb

    output = check_output(args)
    names = list_images(args.input, '--input')
    keys = _keys(names, args.input)

    parent = os.path.dirname(output)
    building = os.path.join(parent, f'.{os.path.basename(output)[:-len(".lmdb")]}.partial.lmdb')
    encode = partial(encode_entry, folder=args.input, compress_level=args.compress_level, max_pixels=args.max_pixels,
                     notify=partial(print_notice, 'make-lmdb'))
    with sigterm_as_interrupt():
        try:
            os.makedirs(parent or '.', exist_ok=True)
            shutil.rmtree(building, ignore_errors=True)  # left over from a killed run of this command
            check_free_space(parent or '.', output, _input_bytes(args.input, names))
            with worker_pool(args.workers) if args.workers > 1 else nullcontext() as pool:
                entries = pool.imap(encode, names) if args.workers > 1 else map(encode, names)
                failures = write_lmdb(building, entries, keys, names, len(names), lmdb_map_size(args.input, names),
                                      args.compress_level)
        except (OSError, lmdb.Error) as err:
            shutil.rmtree(building, ignore_errors=True)
            if isinstance(err, ESCError):
                raise
            raise OutputError(f'cannot write {output}: {getattr(err, "strerror", None) or err}') from None
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        if failures:
            shutil.rmtree(building, ignore_errors=True)
            raise failure_report('make-lmdb', failures, output)
        if os.path.exists(output):
            retired = f'{building}.old'
            os.replace(output, retired)
            os.replace(building, output)
            shutil.rmtree(retired)
        else:
            os.replace(building, output)
    print(f'{len(names)} images -> {output} (meta_info.txt inside)')

