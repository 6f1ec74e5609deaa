"""Download weights files safely: the authors' release (:data:`esc_arch.zoo.RELEASES`) and the third-party
files training needs (:data:`esc_arch.zoo.THIRD_PARTY_FILES`).

- Checked by content: the release publishes no hashes, so a hash seen at the first download would prove
  nothing. A release file is kept under its name only once it loads as weights (``torch.load`` with
  ``weights_only``, see :mod:`esc_arch.checkpoint`) into the network and scale of its row in the
  release table; a third-party file only once its SHA-256 starts with the published prefix and it holds
  the expected tensors. An HTML page, a body cut short or another network's weights are refused. This
  shows the file is weights of the right network, not that they are the authors' trained values.
- Resumable: bytes arrive in ``NAME.part`` beside the target; a later run asks the server for the rest
  (an HTTP ``Range`` request; the reply's ``Content-Range`` must continue the partial file) and starts
  over when the server sends the whole file.
- Atomic and exclusive: the file appears under its name in one rename (:func:`esc_arch.files.atomic_output`);
  a lock (``NAME.lock``, held with ``flock``) lets one download of a file run at a time.
- Bounded: an overall deadline, checked between reads, and a timeout on each read (so the deadline is
  overrun by at most that timeout).
- Recorded: the SHA-256 of every file kept is added to ``SHA256SUMS`` in the download folder (the
  format of ``sha256sum``); a later call on a file there is checked against it, to notice a file
  changed since.

The base URL is the release's (:data:`esc_arch.zoo.RELEASE_URL`) unless ``base_url`` or the environment
variable ``ESC_RELEASE_URL`` names another (a mirror, or a local server in the tests).
"""
import difflib
import hashlib
import http.client
import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from esc_arch.errors import CheckpointError, DownloadError, ESCError
from esc_arch.files import atomic_output
from esc_arch.zoo import (
    PRETRAINED_DIR,
    RELEASE_URL,
    THIRD_PARTY_FILES,
    Release,
    ThirdPartyFile,
    find_release,
    find_third_party,
    release_names,
    scale_label,
    torch_hub_checkpoints,
)

__all__ = ['BASE_URL_VARIABLE', 'CHECKSUMS_FILE', 'DEFAULT_DEADLINE_SECONDS', 'check_release_file',
           'check_third_party_file', 'download', 'download_release', 'download_third_party', 'release_url',
           'sha256_of']

BASE_URL_VARIABLE = 'ESC_RELEASE_URL'
CHECKSUMS_FILE = 'SHA256SUMS'
DEFAULT_DEADLINE_SECONDS = 3600.0
"""Longest a whole download may take (the partial file is kept for the next run when it runs out)."""
_CHUNK = 1 << 20
_READ_TIMEOUT_SECONDS = 30
_CONTENT_RANGE = re.compile(r'bytes (\d+)-(\d+)/(\d+|\*)')

Progress = Callable[[int, 'int | None'], None]


def release_url(release: Release, base_url: str | None = None) -> str:
    """URL of ``release``: under ``base_url``, else ``$ESC_RELEASE_URL``, else the authors' release."""
    return _join(base_url or os.environ.get(BASE_URL_VARIABLE) or RELEASE_URL, release.name)


def _join(base: str, name: str) -> str:
    """``base/name``, after checking that ``base`` is an http(s) URL (one-line error otherwise)."""
    try:
        parts = urllib.parse.urlsplit(base)
        parts.port  # noqa: B018 (raises ValueError for a port out of range or not a number)
    except ValueError as err:
        raise DownloadError(f'bad base URL {base!r}: {err}') from None
    if parts.scheme not in ('http', 'https') or not parts.hostname:
        raise DownloadError(f'bad base URL {base!r}: expected http://HOST/... or https://HOST/...')
    return f'{base.rstrip("/")}/{name}'


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, 'rb') as file:
        for chunk in iter(lambda: file.read(_CHUNK), b''):
            digest.update(chunk)
    return digest.hexdigest()


def download(name: str, directory: str | Path = PRETRAINED_DIR, base_url: str | None = None,
             progress: Progress | None = None,
             deadline_seconds: float = DEFAULT_DEADLINE_SECONDS) -> tuple[Path, bool]:
    """Download a release file into ``directory`` or a third-party file into torch's hub cache.

    See :func:`download_release` and :func:`download_third_party` (``directory`` applies to release files).
    """
    if find_third_party(name) is not None:
        return download_third_party(name, base_url, progress, deadline_seconds)
    return download_release(name, directory, base_url, progress, deadline_seconds)


def download_release(name: str, directory: str | Path = PRETRAINED_DIR, base_url: str | None = None,
                     progress: Progress | None = None,
                     deadline_seconds: float = DEFAULT_DEADLINE_SECONDS) -> tuple[Path, bool]:
    """Download the released weights file ``name`` into ``directory``, or check the copy already there.

    Args:
        name (str): A release file name (any case, ``.pth`` optional), see :func:`esc_arch.zoo.release_names`.
        directory (str | Path): Download folder, created if needed. Default: ``experiments/pretrained_models``.
        base_url (str | None): Where the release files are; default ``$ESC_RELEASE_URL`` or the authors' release.
        progress (Callable | None): Called as ``progress(bytes_so_far, total_bytes_or_None)`` while downloading.
        deadline_seconds (float): Longest the download may take. Default: one hour.

    Returns:
        tuple[Path, bool]: The file, and whether it was downloaded now (False: it was there and passed the checks).

    Raises:
        DownloadError: Unknown name, bad base URL, no connection or an HTTP error (a partial download is
            kept for the next run), a file that is not the weights its name says, another download of the
            file running, or a file whose SHA-256 differs from the one recorded in ``SHA256SUMS``.
    """
    release = find_release(name)
    if release is None:
        known = release_names() + list(THIRD_PARTY_FILES)
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        hint = f'did you mean {close[0]}? ' if close else ''
        raise DownloadError(f'no weights file called {name!r}: {hint}`basicsr download --list` shows them')
    directory = Path(directory)
    url = release_url(release, base_url)
    target = directory / release.name
    checksums = _read_checksums(directory)
    if target.exists():
        _check_recorded(target, checksums.get(release.name), directory)
        check_release_file(target, release, f'{target} (already there)')
        _record_checksum(directory, release.name, checksums)
        return target, False

    def check(path: Path) -> None:
        check_release_file(path, release, f'the file from {url}')
        _check_recorded(path, checksums.get(release.name), directory, f'the file from {url}')

    _download_checked(url, target, check, progress, deadline_seconds, '' if release.confirmed else
                      f' ({release.name} is not confirmed to be in the release: see `basicsr download --list`)')
    _record_checksum(directory, release.name, _read_checksums(directory))
    return target, True


def download_third_party(name: str, base_url: str | None = None, progress: Progress | None = None,
                         deadline_seconds: float = DEFAULT_DEADLINE_SECONDS) -> tuple[Path, bool]:
    """Download a third-party file (e.g. ``vgg19-dcbb9e9d.pth``) into torch's hub cache, where its user looks.

    Args:
        name (str): Its file name or short name (``vgg19``), any case.
        base_url (str | None): A mirror holding the file under its name; default: its publisher's URL.
        progress (Callable | None): As for :func:`download_release`.
        deadline_seconds (float): Longest the download may take.

    Returns:
        tuple[Path, bool]: The file, and whether it was downloaded now.

    Raises:
        DownloadError: As :func:`download_release`; a file whose SHA-256 does not start with the published
            prefix, or that lacks the expected tensors, is refused (and one already there is reported).
    """
    item = find_third_party(name)
    if item is None:
        raise DownloadError(f'no third-party file called {name!r}: one of {", ".join(THIRD_PARTY_FILES)}')
    url = _join(base_url, item.name) if base_url else item.url
    target = torch_hub_checkpoints() / item.name
    if target.exists():
        check_third_party_file(target, item, f'{target} (already there)')
        return target, False
    _download_checked(url, target, lambda path: check_third_party_file(path, item, f'the file from {url}'),
                      progress, deadline_seconds)
    return target, True


def check_release_file(path: Path, release: Release, origin: str | None = None) -> None:
    """Refuse ``path`` unless it loads safely as weights of ``release``'s network and scale.

    The network and scale are inferred from the weights (:func:`esc_arch.checkpoint.infer_network_config`):
    loading alone would not do, as ESC resamples x2 weights to fit x3 and x4 networks. Then the weights
    must load strictly into that network.

    Raises:
        DownloadError: Naming ``origin`` (default: the path) and what it holds instead.
    """
    from esc_arch.archs import build_preset
    from esc_arch.checkpoint import infer_network_config, load_into_network, load_state_dict, matching_preset

    origin = origin or str(path)
    expected = f'{release.preset} {scale_label(release)} weights, as {release.name} should be'
    try:
        state_dict = load_state_dict(path)
        config = infer_network_config(state_dict)
        found = matching_preset(config) or 'unpublished ESC-family', config.get('upscaling_factor')
        if found != (release.preset, release.scale):
            raise CheckpointError(f'it holds {found[0]} {"any scale" if found[1] is None else f"x{found[1]}"} weights')
        load_into_network(build_preset(release.preset, release.scale), state_dict, source=origin)
    except CheckpointError as err:
        raise DownloadError(f'{origin} is not {expected}: {err}') from None


def check_third_party_file(path: Path, item: ThirdPartyFile, origin: str | None = None) -> None:
    """Refuse ``path`` unless its SHA-256 starts with the published prefix and it holds ``item.shapes``.

    Raises:
        DownloadError: Naming ``origin`` (default: the path) and the check that failed.
    """
    from esc_arch.checkpoint import read_checkpoint

    origin = origin or str(path)
    digest = sha256_of(path)
    if not digest.startswith(item.sha256_prefix):
        raise DownloadError(f'{origin} has SHA-256 {digest[:12]}..., not {item.sha256_prefix}... as published for '
                            f'{item.name}: delete it and download it again')
    try:
        state_dict = read_checkpoint(path)
    except CheckpointError as err:
        raise DownloadError(f'{origin} is not usable weights: {err}') from None
    for key, shape in item.shapes.items():
        value = state_dict.get(key)
        if getattr(value, 'shape', None) != shape:
            found = 'missing' if value is None else f'{tuple(getattr(value, "shape", ()))}'
            raise DownloadError(f'{origin} is not {item.name}: {key} should have shape {shape}, found {found}')


def _download_checked(url: str, target: Path, check: Callable[[Path], None], progress: Progress | None,
                      deadline_seconds: float, not_found_hint: str = '') -> None:
    """Fetch ``url`` into ``NAME.part`` (resuming it), run ``check`` on it, then rename it to ``target``."""
    partial = target.with_name(f'{target.name}.part')
    with _new_folders(target.parent), _exclusive(target):
        if target.exists():  # another download finished it since this call looked
            check(target)
            return
        _fetch(url, partial, progress, time.monotonic() + deadline_seconds, not_found_hint)
        try:
            check(partial)
        except ESCError:
            partial.unlink(missing_ok=True)  # not the file wanted: resuming it would not help
            raise
        with atomic_output(target) as temporary:
            os.replace(partial, temporary)


@contextmanager
def _new_folders(folder: Path) -> Iterator[None]:
    """Create ``folder`` (and missing parents); if the block fails, remove those it created that are still empty."""
    created = [path for path in (folder, *folder.parents) if not path.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DownloadError(f'cannot create the download folder {folder}: {err.strerror or err}') from None
    try:
        yield
    except BaseException:
        for path in created:  # deepest first; a kept partial download stops it
            try:
                path.rmdir()
            except OSError:
                break
        raise


@contextmanager
def _exclusive(target: Path) -> Iterator[None]:
    """Hold ``NAME.lock`` beside ``target`` for one download at a time; another process gets a one-line error."""
    lock_path = target.with_name(f'{target.name}.lock')
    busy = DownloadError(f'another download of {target.name} into {target.parent} is running (it holds {lock_path}); '
                         'wait for it to finish')
    try:
        handle = open(lock_path, 'a+b')
    except OSError as err:
        raise DownloadError(f'cannot create {lock_path}: {err.strerror or err}') from None
    with handle:
        try:
            _lock(handle)
        except OSError:
            raise busy from None
        # The holder before this one may have removed the file between our open and our lock.
        if not lock_path.exists() or not os.path.samestat(os.fstat(handle.fileno()), lock_path.stat()):
            raise busy
        try:
            yield
        finally:
            try:
                lock_path.unlink(missing_ok=True)  # while still held: a process that opened it sees it is stale
            except OSError:  # Windows: an open file cannot be removed; the lock is released on close
                pass


def _lock(handle: IO) -> None:
    """Lock an open file without waiting (OSError if another process holds it); released when it is closed."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        return
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def _fetch(url: str, partial: Path, progress: Progress | None, deadline: float, not_found_hint: str = '') -> None:
    """Append the rest of ``url`` to ``partial`` (created if missing), asking for a range when it holds bytes."""
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={'User-Agent': 'esc-arch'})
    if have:
        request.add_header('Range', f'bytes={have}-')
    try:
        with urllib.request.urlopen(request, timeout=_READ_TIMEOUT_SECONDS) as response:
            start, total = _where_the_body_starts(url, response, have)
            _receive(url, response, partial, start, total, progress, deadline)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # "nothing after the end": complete if the check after agrees
            _check_unsatisfiable(url, err, partial, have)
            return
        hint = not_found_hint if err.code == 404 else ''
        raise DownloadError(f'cannot download {url}: HTTP {err.code} {err.reason}{hint}') from None
    except (urllib.error.URLError, http.client.HTTPException, socket.timeout, ConnectionError, ValueError) as err:
        if isinstance(err, urllib.error.URLError):
            reason = f'{err.reason} (no internet connection?)'
        else:
            reason = f'{type(err).__name__}: {err}' if str(err) else type(err).__name__
        raise DownloadError(f'cannot download {url}: {reason}{_kept(partial)}') from None
    except OSError as err:
        if isinstance(err, DownloadError):
            raise
        raise DownloadError(f'cannot write {partial}: {err.strerror or err}') from None


def _where_the_body_starts(url: str, response: http.client.HTTPResponse, have: int) -> tuple[int, int | None]:
    """Offset in the file of the reply's first byte, and the file's size if known; refuses HTML and bad ranges."""
    status = getattr(response, 'status', 200)
    content_type = response.headers.get('Content-Type', '')
    if content_type.split(';')[0].strip().lower() in ('text/html', 'application/xhtml+xml'):
        raise DownloadError(f'{url} sent a web page ({content_type}), not a weights file: is the URL right?')
    length = response.headers.get('Content-Length')
    length = int(length) if length and length.isdigit() else None
    if status == 200:
        return 0, length  # the whole file: start over
    if status != 206:
        raise DownloadError(f'cannot download {url}: unexpected HTTP {status}')
    match = _CONTENT_RANGE.fullmatch(response.headers.get('Content-Range', '').strip())
    if match is None:
        raise DownloadError(f'cannot download {url}: a partial reply (206) without a valid Content-Range')
    first, last, size = int(match.group(1)), int(match.group(2)), match.group(3)
    total = None if size == '*' else int(size)
    if first not in (0, have) or last < first or (total is not None and last >= total):
        raise DownloadError(f'cannot download {url}: the server sent bytes {first}-{last} when bytes from {have} '
                            'were asked for')
    return first, total


def _receive(url: str, response: http.client.HTTPResponse, partial: Path, start: int, total: int | None,
             progress: Progress | None, deadline: float) -> None:
    """Write the body at ``start`` of ``partial`` (truncating it there), stopping at ``deadline``."""
    done = start
    with open(partial, 'ab' if start else 'wb') as file:
        file.truncate(start)
        while True:
            if time.monotonic() > deadline:
                raise DownloadError(f'the download of {url} ran past its deadline at {done} bytes; run the '
                                    f'command again to resume it{_kept(partial)}')
            chunk = response.read1(_CHUNK)  # one socket read at most, each bounded by the read timeout
            if not chunk:
                break
            file.write(chunk)
            done += len(chunk)
            if total is not None and done > total:
                raise DownloadError(f'{url} sent more than the {total} bytes it announced')
            if progress is not None:
                progress(done, total)
    if total is not None and done < total:
        raise DownloadError(f'the download of {url} stopped at {done} of {total} bytes; run the command again to '
                            f'resume it{_kept(partial)}')


def _check_unsatisfiable(url: str, err: urllib.error.HTTPError, partial: Path, have: int) -> None:
    """A 416 means the partial file holds the whole file only if the server's size (when given) agrees."""
    match = re.fullmatch(r'bytes \*/(\d+)', (err.headers.get('Content-Range') or '').strip())
    if match and int(match.group(1)) != have:
        partial.unlink(missing_ok=True)
        raise DownloadError(f'{url} is {match.group(1)} bytes but the partial download held {have}: removed it; run '
                            'the command again')


def _kept(partial: Path) -> str:
    return f'; {partial} is kept and the next run resumes it' if partial.exists() and partial.stat().st_size else ''


def _check_recorded(path: Path, expected: str | None, directory: Path, origin: str | None = None) -> None:
    """A file changed since its SHA-256 was recorded is refused (the record itself proves nothing about it)."""
    if expected is None:
        return
    actual = sha256_of(path)
    if actual != expected:
        raise DownloadError(f'{origin or path} has SHA-256 {actual[:12]}..., not {expected[:12]}... as recorded in '
                            f'{directory / CHECKSUMS_FILE} at an earlier download: the file changed since (delete '
                            'the file, or its line there, to accept a new one)')


def _read_checksums(directory: Path) -> dict[str, str]:
    path = directory / CHECKSUMS_FILE
    if not path.exists():
        return {}
    try:
        text = path.read_text(encoding='utf-8')
    except UnicodeDecodeError:
        raise DownloadError(f'{path} is not UTF-8 text (a sha256sum list is expected): fix or delete it') from None
    except OSError as err:
        kind = 'is a folder, not a file' if path.is_dir() else f'cannot be read ({err.strerror or err})'
        raise DownloadError(f'{path} {kind}: a sha256sum list is expected there; move it away') from None
    checksums = {}
    for line in text.splitlines():
        digest, _, name = line.partition('  ')
        if len(digest) == 64 and name:
            checksums[name.lstrip('*')] = digest.lower()
    return checksums


def _record_checksum(directory: Path, name: str, checksums: dict[str, str]) -> None:
    """Add ``name``'s digest to ``SHA256SUMS`` (read as ``checksums``) if it is not there, rewriting it atomically."""
    if name in checksums:
        return
    checksums = {**checksums, name: sha256_of(directory / name)}
    with atomic_output(directory / CHECKSUMS_FILE) as temporary:
        temporary.write_text(''.join(f'{value}  {key}\n' for key, value in sorted(checksums.items())),
                             encoding='utf-8')
