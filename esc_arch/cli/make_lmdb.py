"""``basicsr make-lmdb``: pack a folder of images into an LMDB for BasicSR's ``io_backend: lmdb``.

Built by :func:`basicsr.utils.lmdb_util.make_lmdb_from_imgs` (PNG-encoded images, keys = file names
without extension, ``meta_info.txt`` beside the data). An existing LMDB is kept unless
``--overwrite`` is given; even then the new one is built beside it and swapped in only when complete.
"""
import os
import shutil
from contextlib import redirect_stdout

from esc_arch.cli import CommandError
from esc_arch.cli.image_folders import add_workers_argument, list_images


def add_arguments(parser):
    parser.add_argument('-i', '--input', required=True,
                        help='folder of images (e.g. datasets/DIV2K/DIV2K_train_HR_sub)')
    parser.add_argument('-o', '--output', required=True, help='LMDB folder to create, ending in .lmdb')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing LMDB at --output')
    parser.add_argument('--compress-level', type=int, default=1, choices=range(10), metavar='0-9',
                        help='PNG compression of the stored images (default: 1, as BasicSR)')
    add_workers_argument(parser)


def _keys(names, folder):
    keys = [os.path.splitext(name)[0] for name in names]
    for name, key in zip(names, keys):
        if not key.isascii() or ' ' in key:
            raise CommandError(f'{os.path.join(folder, name)}: LMDB keys must be ASCII without spaces; rename the file')
    if len(set(keys)) != len(keys):
        duplicate = next(key for key in keys if keys.count(key) > 1)
        raise CommandError(f'{folder} holds several images named {duplicate}.* (LMDB keys must be unique)')
    return keys


def _map_size(folder, names):
    """An upper bound of the LMDB size. BasicSR's default (10x the first image) overflows when later
    images are larger; re-encoding may grow compressed files several times, and each entry takes at
    least a page. The map is reserved address space, not disk space, on Linux."""
    file_bytes = sum(os.path.getsize(os.path.join(folder, name)) for name in names)
    return 10 * file_bytes + 64 * 1024 * len(names) + 2**24


def run(args):
    from basicsr.utils.lmdb_util import make_lmdb_from_imgs

    output = os.path.normpath(args.output)
    if not output.endswith('.lmdb'):
        raise CommandError(f'--output must end with .lmdb (BasicSR recognises LMDBs by it); got {args.output}')
    if os.path.exists(output) and not os.path.isdir(output):
        raise CommandError(f'--output: {output} exists and is not a folder (an LMDB is a folder); choose another name')
    if os.path.exists(output) and not args.overwrite:
        raise CommandError(f'--output: {output} already exists; pass --overwrite to replace it')
    names = list_images(args.input, '--input')
    keys = _keys(names, args.input)

    parent = os.path.dirname(output)
    os.makedirs(parent or '.', exist_ok=True)
    building = os.path.join(parent, f'.{os.path.basename(output)[:-len(".lmdb")]}.partial.lmdb')
    shutil.rmtree(building, ignore_errors=True)  # left over from an interrupted run of this command
    try:
        # BasicSR's messages name the temporary folder; its progress bar (stderr) stays.
        with open(os.devnull, 'w') as devnull, redirect_stdout(devnull):
            make_lmdb_from_imgs(args.input, building, names, keys, compress_level=args.compress_level,
                                multiprocessing_read=args.workers > 1, n_thread=args.workers,
                                map_size=_map_size(args.input, names))
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    if os.path.exists(output):
        retired = f'{building}.old'
        os.replace(output, retired)
        os.replace(building, output)
        shutil.rmtree(retired)
    else:
        os.replace(building, output)
    print(f'{len(names)} images -> {output} (meta_info.txt inside)')
