"""``basicsr download``: fetch the authors' released weights into ``experiments/pretrained_models/`` and the
third-party files training needs (torchvision's VGG19) into torch's hub cache.

Resumable, atomic, one download of a file at a time, and checked by content (see :mod:`esc_arch.download`);
``--list`` shows the files, what each is for, and what the checks cannot vouch for.
"""
import argparse
import sys
import time
from typing import Self

from esc_arch.cli import CommandError
from esc_arch.download import BASE_URL_VARIABLE, DEFAULT_DEADLINE_SECONDS, download
from esc_arch.zoo import (
    PRETRAINED_DIR,
    RELEASE_URL,
    RELEASES,
    THIRD_PARTY_FILES,
    release_status,
    scale_label,
    torch_hub_checkpoints,
)

PROGRESS_EVERY_SECONDS = 10.0
"""Without a terminal, a progress line at most this often (and at each tenth of a file of known size)."""


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``download`` options to an argparse parser."""
    parser.add_argument('names', nargs='*', metavar='NAME',
                        help='file names, e.g. ESC_DIV2K_X4.pth (any case, .pth optional) or vgg19; see --list')
    parser.add_argument('--dir', default=PRETRAINED_DIR,
                        help=f'download folder of the release files (default: {PRETRAINED_DIR}, where the options '
                        'look); third-party files go to torch\'s hub cache')
    parser.add_argument('--base-url', help=f'where the files are (default: ${BASE_URL_VARIABLE} if set, else '
                        f'{RELEASE_URL}; third-party files: their publisher)')
    parser.add_argument('--deadline', type=float, default=DEFAULT_DEADLINE_SECONDS, metavar='SECONDS',
                        help=f'longest each download may take (default: {DEFAULT_DEADLINE_SECONDS:.0f}); the '
                        'partial file is kept for the next run')
    parser.add_argument('--list', action='store_true', help='list the files and exit')
    return parser


def run(args: argparse.Namespace) -> int:
    """Download each named file (or list them); stops at the first failure."""
    if args.list:
        print(release_table())
        return 0
    if not args.names:
        raise CommandError('name at least one file (basicsr download --list shows them)')
    if not args.deadline > 0:
        raise CommandError(f'--deadline must be a positive number of seconds, not {args.deadline}')
    for name in args.names:
        with _Progress(name) as progress:
            path, downloaded = download(name, args.dir, args.base_url, progress, args.deadline)
        print(f'{"downloaded and checked" if downloaded else "already there (checked)"}: {path}')
    return 0


class _Progress:
    """A tqdm bar on a terminal; elsewhere (logs, CI) a line to stderr now and then."""

    def __init__(self, name: str) -> None:
        self.name, self.bar, self.last_time, self.last_tenth = name, None, 0.0, -1

    def __enter__(self) -> Self:
        if sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(unit='B', unit_scale=True, unit_divisor=1024, desc=self.name, leave=False)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()

    def __call__(self, done: int, total: int | None) -> None:
        if self.bar is not None:
            self.bar.total = total
            self.bar.update(done - self.bar.n)
            return
        now = time.monotonic()
        tenth = done * 10 // total if total else -1
        if tenth > self.last_tenth or now - self.last_time >= PROGRESS_EVERY_SECONDS:
            self.last_tenth, self.last_time = tenth, now
            share = f' of {total / 2**20:.1f} MiB ({100 * done // total}%)' if total else ''
            print(f'{self.name}: {done / 2**20:.1f} MiB{share}', file=sys.stderr, flush=True)


def release_table() -> str:
    """The downloadable files, one per line: the authors' (with the options that use each) and third-party ones."""
    width = max(len(name) for name in RELEASES)
    lines = ["The authors' files. Release 1.0.0 publishes no hashes: a file is kept only once it loads as the network",
             "and scale below, which shows that it fits, not that it holds the authors' trained values.",
             f'{"file":<{width}}  {"network":<9}  scale  options / in the release']
    for name, release in RELEASES.items():
        lines.append(f'{name:<{width}}  {release.preset:<9}  {scale_label(release):<5}  {release.options or "-"}')
        if not release.confirmed:
            lines.append(f'{"":<{width}}  {"":<9}  {"":<5}  {release_status(release)}')
    lines += ['', f'Third-party files (into {torch_hub_checkpoints()}):']
    for item in THIRD_PARTY_FILES.values():
        lines += [f'{item.name}  for {item.needed_for}',
                  f'{"":<{len(item.name)}}  only the SHA-256 prefix {item.sha256_prefix} is published: checked, '
                  'and the tensors the file must hold']
    return '\n'.join(lines)
