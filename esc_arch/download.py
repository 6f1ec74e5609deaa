"""Download the authors' released weights (:mod:`esc_arch.zoo`) safely.

- Resumable: bytes arrive in ``NAME.part`` beside the target; a later run asks the server for the rest
  (an HTTP ``Range`` request) and starts over only if the server ignores it.
- Atomic: the file appears under its name only once it is complete (one rename).
- Checked: the SHA-256 of every downloaded file is recorded in ``SHA256SUMS`` in the download folder
  (the format of ``sha256sum``, so ``sha256sum -c SHA256SUMS`` checks it too) the first time; later
  downloads and calls on an existing file are checked against it.

The base URL is the release's (:data:`esc_arch.zoo.RELEASE_URL`) unless ``base_url`` or the environment
variable ``ESC_RELEASE_URL`` names another (a mirror, or a local server in the tests).
"""
import difflib
import hashlib
import http.client
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from esc_arch.errors import DownloadError
from esc_arch.zoo import PRETRAINED_DIR, RELEASE_URL, Release, find_release, release_names

__all__ = ['BASE_URL_VARIABLE', 'CHECKSUMS_FILE', 'download_release', 'release_url', 'sha256_of']

BASE_URL_VARIABLE = 'ESC_RELEASE_URL'
CHECKSUMS_FILE = 'SHA256SUMS'
_CHUNK = 1 << 20
_TIMEOUT_SECONDS = 30


def release_url(release: Release, base_url: str | None = None) -> str:
    """URL of ``release``: under ``base_url``, else ``$ESC_RELEASE_URL``, else the authors' release."""
    base = base_url or os.environ.get(BASE_URL_VARIABLE) or RELEASE_URL
    return f'{base.rstrip("/")}/{release.name}'


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, 'rb') as file:
        for chunk in iter(lambda: file.read(_CHUNK), b''):
            digest.update(chunk)
    return digest.hexdigest()


def download_release(name: str, directory: str | Path = PRETRAINED_DIR, base_url: str | None = None,
                     progress: Callable[[int, int | None], None] | None = None) -> tuple[Path, bool]:
    """Download the released weights file ``name`` into ``directory``, or check the copy already there.

    Args:
        name (str): A release file name (any case, ``.pth`` optional), see :func:`esc_arch.zoo.release_names`.
        directory (str | Path): Download folder, created if needed. Default: ``experiments/pretrained_models``.
        base_url (str | None): Where the release files are; default ``$ESC_RELEASE_URL`` or the authors' release.
        progress (Callable | None): Called as ``progress(bytes_so_far, total_bytes_or_None)`` while downloading.

    Returns:
        tuple[Path, bool]: The file, and whether it was downloaded now (False: it was there and matched).

    Raises:
        DownloadError: Unknown name, no connection or an HTTP error (a partial download is kept for the
            next run), or a file whose SHA-256 differs from the one recorded.
    """
    release = find_release(name)
    if release is None:
        close = difflib.get_close_matches(name, release_names(), n=1, cutoff=0.5)
        hint = f'did you mean {close[0]}? ' if close else ''
        raise DownloadError(f'no released weights called {name!r}: {hint}`basicsr download --list` shows them')
    directory = Path(directory)
    target = directory / release.name
    checksums = _read_checksums(directory)
    if target.exists():
        _check(target, checksums.get(release.name), directory)
        if release.name not in checksums:
            _record_checksum(directory, release.name, sha256_of(target))
        return target, False
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DownloadError(f'cannot create the download folder {directory}: {err.strerror or err}') from None
    partial = directory / f'{release.name}.part'
    url = release_url(release, base_url)
    _fetch(url, partial, progress)
    try:
        _check(partial, checksums.get(release.name), directory, downloaded_from=url)
    except DownloadError:
        partial.unlink(missing_ok=True)  # corrupt or replaced upstream: resuming it would not help
        raise
    os.replace(partial, target)
    if release.name not in checksums:
        _record_checksum(directory, release.name, sha256_of(target))
    return target, True


def _fetch(url: str, partial: Path, progress: Callable[[int, int | None], None] | None) -> None:
    """Append the rest of ``url`` to ``partial`` (created if missing), asking for a range when it holds bytes."""
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={'User-Agent': 'esc-arch'})
    if have:
        request.add_header('Range', f'bytes={have}-')
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_SECONDS) as response:
            status = response.status if hasattr(response, 'status') else 200
            if status != 206:
                have = 0  # the server sent the whole file: start over
            length = response.headers.get('Content-Length')
            total = have + int(length) if length and length.isdigit() else None
            with open(partial, 'ab' if have else 'wb') as file:
                done = have
                for chunk in iter(lambda: response.read(_CHUNK), b''):
                    file.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # the range starts at the end: the partial file is already complete
            return
        raise DownloadError(f'cannot download {url}: HTTP {err.code} {err.reason}') from None
    except (urllib.error.URLError, http.client.HTTPException, socket.timeout, ConnectionError, ValueError) as err:
        if isinstance(err, urllib.error.URLError):
            reason = f'{err.reason} (no internet connection?)'
        else:
            reason = f'{type(err).__name__}: {err}' if str(err) else type(err).__name__
        kept = f'; {partial} is kept and the next run resumes it' if partial.exists() and partial.stat().st_size \
            else ''
        raise DownloadError(f'cannot download {url}: {reason}{kept}') from None
    except OSError as err:
        raise DownloadError(f'cannot write {partial}: {err.strerror or err}') from None
    if total is not None and done < total:
        raise DownloadError(f'the download of {url} stopped at {done} of {total} bytes; run the command again to '
                            f'resume it ({partial} is kept)')


def _check(path: Path, expected: str | None, directory: Path, downloaded_from: str | None = None) -> None:
    if expected is None:
        return
    actual = sha256_of(path)
    if actual != expected:
        origin = f'the file downloaded from {downloaded_from}' if downloaded_from else str(path)
        raise DownloadError(f'{origin} has SHA-256 {actual[:12]}..., not {expected[:12]}... as recorded in '
                            f'{directory / CHECKSUMS_FILE}: delete it to download it again')


def _read_checksums(directory: Path) -> dict[str, str]:
    path = directory / CHECKSUMS_FILE
    checksums = {}
    if path.is_file():
        for line in path.read_text(encoding='utf-8').splitlines():
            digest, _, name = line.partition('  ')
            if len(digest) == 64 and name:
                checksums[name.lstrip('*')] = digest.lower()
    return checksums


def _record_checksum(directory: Path, name: str, digest: str) -> None:
    """Add ``name``'s digest to ``SHA256SUMS``, rewriting it atomically."""
    checksums = _read_checksums(directory)
    checksums[name] = digest
    path = directory / CHECKSUMS_FILE
    temporary = path.with_name(f'.{CHECKSUMS_FILE}.{os.getpid()}.tmp')
    temporary.write_text(''.join(f'{value}  {key}\n' for key, value in sorted(checksums.items())), encoding='utf-8')
    os.replace(temporary, path)
