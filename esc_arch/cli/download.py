"""``basicsr download``: fetch the authors' released weights into ``experiments/pretrained_models/``.

Resumable, atomic and checked against the SHA-256 recorded at the first download (see
:mod:`esc_arch.download`); ``--list`` shows the release files with the options that test them.
"""
import argparse

from tqdm import tqdm

from esc_arch.cli import CommandError
from esc_arch.download import BASE_URL_VARIABLE, download_release
from esc_arch.zoo import PRETRAINED_DIR, RELEASE_URL, RELEASES


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``download`` options to an argparse parser."""
    parser.add_argument('names', nargs='*', metavar='NAME',
                        help='release file names, e.g. ESC_DIV2K_X4.pth (any case, .pth optional); see --list')
    parser.add_argument('--dir', default=PRETRAINED_DIR,
                        help=f'download folder (default: {PRETRAINED_DIR}, where the test options look)')
    parser.add_argument('--base-url', help=f'where the files are (default: ${BASE_URL_VARIABLE} if set, else '
                        f'{RELEASE_URL})')
    parser.add_argument('--list', action='store_true', help='list the released weights and exit')
    return parser


def run(args: argparse.Namespace) -> int:
    """Download each named file (or list them); stops at the first failure."""
    if args.list:
        print(release_table())
        return 0
    if not args.names:
        raise CommandError('name at least one release file (basicsr download --list shows them)')
    for name in args.names:
        with tqdm(unit='B', unit_scale=True, unit_divisor=1024, desc=name, disable=None, leave=False) as bar:
            def progress(done, total):
                bar.total = total
                bar.update(done - bar.n)
            path, downloaded = download_release(name, args.dir, args.base_url, progress)
        print(f'{"downloaded" if downloaded else "already there (SHA-256 checked)"}: {path}')
    return 0


def release_table() -> str:
    """The released weights, one per line, with the options file that tests each."""
    width = max(len(name) for name in RELEASES)
    lines = [f'{"file":<{width}}  {"network":<9}  scale  test options']
    lines += [f'{name:<{width}}  {release.preset:<9}  x{release.scale:<4}  {release.options}'
              for name, release in RELEASES.items()]
    return '\n'.join(lines)
