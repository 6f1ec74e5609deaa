"""Writing files atomically: the one place where the package puts a finished file under its final name."""
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from esc_arch.errors import OutputError

__all__ = ['atomic_output', 'atomic_write_bytes']


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Give a temporary path beside ``path`` to write to; when the block succeeds, make it ``path``.

    The temporary file (``.NAME.PID.part``: never mistaken for weights or a training state) is flushed
    to disk and renamed over ``path`` in one step, so a crash, a kill or an error inside the block
    leaves any previous ``path`` as it was and no partial file under the final name.

    Raises:
        OutputError: The folder cannot be created or the file cannot be written or renamed
            (read-only folder, full disk, ...), naming ``path``.
    """
    path = Path(path)
    temporary = path.with_name(f'.{path.name}.{os.getpid()}.part')
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield temporary
        with open(temporary, 'rb+') as stream:
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except OSError as err:
        raise OutputError(f'cannot write {path}: {err.strerror or err}') from None
    finally:
        try:
            temporary.unlink(missing_ok=True)
        except OSError:  # the folder itself is unwritable: nothing was created there
            pass


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through :func:`atomic_output`."""
    with atomic_output(path) as temporary:
        temporary.write_bytes(data)
