"""What ``basicsr upscale`` reads and writes, decided before anything is written.

:func:`find_inputs` lists the files of a run (with a notice for each entry it cannot use, such
as a dangling symbolic link); :func:`plan_outputs` names every output (upscaled file and
comparison picture) and refuses the whole run, in one line, when an output would be an input of
the run, would be written twice, or exists already without ``overwrite``. Standard library only:
the command plans its outputs before it imports torch or loads a network.
"""
import errno
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from esc_arch.errors import ImageError, OutputError

__all__ = ['OUTPUT_FORMATS', 'COMPARISONS_FOLDER', 'Job', 'find_inputs', 'plan_outputs']

OUTPUT_FORMATS = ('auto', 'png', 'jpg', 'webp')
"""Values of ``--ext``: ``auto`` keeps each input's format."""
COMPARISONS_FOLDER = 'comparisons'
"""Sub-folder of the output folder that receives the ``--compare`` pictures."""


@dataclass(frozen=True)
class Job:
    """One input of a run and the files it produces.

    Attributes:
        source (Path): The input file.
        target (Path): The upscaled output.
        comparison (Path | None): The ``--compare`` picture, None without ``--compare``.
    """
    source: Path
    target: Path
    comparison: Path | None = None

    @property
    def outputs(self) -> tuple[Path, ...]:
        return (self.target, ) if self.comparison is None else (self.target, self.comparison)


def find_inputs(path: Path, image_extensions: Sequence[str], video_extensions: Sequence[str] = (),
                notify: Callable[[str], None] = print) -> list[Path]:
    """``path`` itself (an image or a video), or the images directly inside the folder ``path``.

    In a folder, hidden files, sub-folders and other files are skipped silently; a dangling
    symbolic link or a link loop with an image extension is skipped with a notice (through
    ``notify``), as it may be a file the user expected to be processed.

    Raises:
        ImageError: ``path`` does not exist, is a file of another type, or is a folder without images.
    """
    image_extensions = tuple(extension.lower() for extension in image_extensions)
    if not path.is_dir():
        if not path.exists():
            raise ImageError(f'--input not found: {path}')
        if path.suffix.lower() not in image_extensions + tuple(video_extensions):
            raise ImageError(f'{path} is not a supported image or video type '
                             f'({", ".join(image_extensions + tuple(video_extensions))})')
        return [path]
    found = []
    for entry in sorted(os.scandir(path), key=lambda entry: entry.name):
        if entry.name.startswith('.') or not entry.name.lower().endswith(image_extensions):
            continue
        reason = _broken_link(entry)
        if reason:
            notify(f'skipped {entry.path}: {reason}')
        elif entry.is_file():
            found.append(Path(entry.path))
    if not found:
        raise ImageError(f'--input: no images ({", ".join(image_extensions)}) in {path}')
    return found


def _broken_link(entry: os.DirEntry) -> str | None:
    """Why the symbolic link ``entry`` cannot be followed; None when it can, or is no link."""
    if not entry.is_symlink():
        return None
    try:
        os.stat(entry.path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return 'symbolic link loop'
        if err.errno == errno.ENOENT:
            return 'dangling symbolic link (its target does not exist)'
        return f'symbolic link that cannot be followed ({err.strerror})'
    return None


def output_name(source: Path, suffix: str, extension: str) -> str:
    """The output file name of ``source``: its stem, ``_SUFFIX`` when given, and ``.EXT`` (``auto``: its own)."""
    stem = f'{source.stem}_{suffix}' if suffix else source.stem
    return stem + (source.suffix if extension == 'auto' else f'.{extension}')


def plan_outputs(sources: Sequence[Path], output_dir: Path, suffix: str = '', extension: str = 'auto',
                 compare: bool = False, overwrite: bool = False) -> list[Job]:
    """Name every output of a run, and refuse the run before anything is written when an output is unsafe.

    Outputs are ``OUTPUT_DIR/NAME`` (:func:`output_name`) and, with ``compare``,
    ``OUTPUT_DIR/comparisons/STEM.png`` after the output's stem; where two outputs share a stem
    (``a.png`` and ``a.jpg``) their pictures keep the whole output name (``a.png.png``, ``a.jpg.png``).

    Raises:
        OutputError: An output is one of the run's inputs (also through a link), two inputs would
            write the same output, an output is a folder, or an output exists and ``overwrite`` is off.
    """
    for folder in (output_dir, output_dir / COMPARISONS_FOLDER):
        if folder.exists() and not folder.is_dir():
            raise OutputError(f'{folder} exists and is not a folder: choose another output folder')
    targets = [output_dir / output_name(source, suffix, extension) for source in sources]
    shared_stems = {stem for stem, count in Counter(target.stem for target in targets).items() if count > 1}
    jobs = [Job(source, target, _comparison_path(target, shared_stems) if compare else None)
            for source, target in zip(sources, targets)]
    _refuse_collisions(jobs)
    _refuse_existing(jobs, overwrite)
    return jobs


def _comparison_path(target: Path, shared_stems: set[str]) -> Path:
    name = f'{target.name}.png' if target.stem in shared_stems else f'{target.stem}.png'
    return target.parent / COMPARISONS_FOLDER / name


def _refuse_collisions(jobs: list[Job]) -> None:
    written = {}
    for job in jobs:
        for output in job.outputs:
            key = os.path.normcase(os.path.abspath(output))
            if key in written:
                raise OutputError(f'{written[key]} and {job.source} would both be written to {output}: '
                                  'rename one, or use --suffix/--ext')
            written[key] = job.source


def _refuse_existing(jobs: list[Job], overwrite: bool) -> None:
    inputs = {_identity(job.source): job.source for job in jobs}
    inputs.pop(None, None)
    existing = []
    for job in jobs:
        for output in job.outputs:
            source = inputs.get(_identity(output))
            if source is not None:
                raise OutputError(f'refusing to overwrite the input {source} (it would be the output {output}): '
                                  'choose another output folder')
            if output.is_dir():
                raise OutputError(f'the output {output} is a folder: choose another output folder')
            if os.path.lexists(output):  # a file, or a link (even dangling) that would be replaced
                existing.append(output)
    if existing and not overwrite:
        more = f' (and {len(existing) - 1} more output(s))' if len(existing) > 1 else ''
        raise OutputError(f'{existing[0]} exists{more}: pass --overwrite to replace, or choose another output folder')


def _identity(path: Path) -> tuple[int, int] | None:
    """The file ``path`` is (device and inode: the same through any link), None if nothing is there."""
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_dev, status.st_ino
