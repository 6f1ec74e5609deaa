"""One run per experiment folder: a lock file beside it, holding the process id and host of its run.

Two ``basicsr train`` runs of one experiment name would write their checkpoints into one folder, and a
run that does not resume renames (archives) the folder of the run in progress. :func:`experiment_lock`
is taken before BasicSR touches the folder; a second run is refused. A lock left by a run that was
killed (its process no longer exists on this host) is taken over, with a warning; a lock from another
host cannot be checked and blocks until it is deleted.
"""
import contextlib
import logging
import os
import socket
from collections.abc import Iterator

from esc_arch.errors import TrainingError

__all__ = ['experiment_lock', 'lock_path']

logger = logging.getLogger(__name__)


def lock_path(folder: str) -> str:
    """The lock file of ``folder``: beside it (``experiments/NAME.lock``), so that archiving the folder keeps it."""
    return f'{os.path.normpath(folder)}.lock'


def _owner(path: str) -> tuple[int, str] | None:
    """``(pid, host)`` written in the lock file ``path``; None when it is gone or unreadable."""
    try:
        with open(path, encoding='utf-8') as stream:
            pid, host = stream.read().split()
        return int(pid), host
    except (OSError, ValueError):
        return None


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


@contextlib.contextmanager
def experiment_lock(folder: str) -> Iterator[str]:
    """Hold the lock of the experiment (or results) ``folder`` for the duration of the block.

    Raises:
        TrainingError: Another run, alive or on another host, holds the lock.
    """
    path = lock_path(folder)
    parent = os.path.dirname(path) or '.'
    made_parent = not os.path.isdir(parent)
    os.makedirs(parent, exist_ok=True)
    me = (os.getpid(), socket.gethostname())
    temporary = f'{path}.{me[0]}.tmp'
    with open(temporary, 'w', encoding='utf-8') as stream:
        stream.write(f'{me[0]} {me[1]}\n')
    try:
        try:
            os.link(temporary, path)  # fails if the lock exists; the lock appears with its content
        except FileExistsError:
            owner = _owner(path)
            if owner is not None and (owner[1] != me[1] or _running(owner[0])):
                raise TrainingError(
                    f'{folder} is in use by another run (process {owner[0]} on {owner[1]}, lock file {path}): '
                    f'wait for it to end or use another name; delete {path} only if that run no longer exists'
                ) from None
            logger.warning(f'Taking over {path}: ' + ('its run (process {} on {}) no longer exists.'.format(*owner)
                                                      if owner else 'it is unreadable (left by a killed run).'))
            os.replace(temporary, path)
            if _owner(path) != me:  # another run took it over at the same moment
                raise TrainingError(f'{folder} was just locked by another run (lock file {path})') from None
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    try:
        yield path
    finally:
        if _owner(path) == me:
            os.remove(path)
        if made_parent and not os.listdir(parent):
            os.rmdir(parent)  # a run refused by BasicSR leaves no empty experiments/ behind
