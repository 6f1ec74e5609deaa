"""What the image commands share besides :mod:`esc_arch.images`: options, notices, parallel work, signals.

Standard library imports only at the top (``--help`` of the commands stays fast); tqdm and
:mod:`esc_arch.images` are imported where they are used.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import signal
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, NoReturn, TypeVar

from esc_arch.errors import ImageError, OutputError

if TYPE_CHECKING:
    from multiprocessing.pool import Pool
    from types import FrameType

Item = TypeVar('Item')
Result = TypeVar('Result')


def run_parallel(function: Callable[[Item], Result], items: Sequence[Item], workers: int,
                 unit: str = 'image') -> list[Result]:
    """Call ``function`` on every item, in ``workers`` processes (1: in this one), with a progress bar.

    Returns:
        list: The results, in the order they were done.
    """
    from tqdm import tqdm

    results = []
    with tqdm(total=len(items), unit=unit) as progress:
        if workers <= 1:
            for item in items:
                results.append(function(item))
                progress.update()
        else:
            with worker_pool(workers) as pool:
                for result in pool.imap_unordered(function, items):
                    results.append(result)
                    progress.update()
    return results


_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextmanager
def worker_pool(workers: int) -> Iterator[Pool]:
    """A pool of ``workers`` spawned processes (not forked: a fork of a process whose torch thread pool has run
    can deadlock), terminated (and waited for) when the block ends or is interrupted.

    Ctrl-C and SIGTERM are held back while the workers start and while they are stopped, and act once that is
    done: an interruption in the middle would leave a worker reading its start-up data from a closed pipe, or
    semaphores removed under it, and it would print a traceback. In the workers, Ctrl-C is left to this process
    and SIGTERM (sent by the pool when it stops them) ends them without a word.
    """
    pool = None
    try:
        with _stop_signals_held():
            # Blocked too, so that the workers start with them blocked (the mask is inherited) until _init_worker.
            previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
            try:
                pool = multiprocessing.get_context('spawn').Pool(workers, initializer=_init_worker)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
        yield pool
    finally:
        if pool is not None:
            with _stop_signals_held():
                pool.terminate()  # returns once the workers have ended


@contextmanager
def _stop_signals_held():
    """Within the block, Ctrl-C and SIGTERM are only noted; the first one noted is raised again when it ends.

    Blocking them with ``pthread_sigmask`` alone is not enough: the kernel then gives the signal to another thread
    (tqdm's monitor, the pool's own threads) and Python still runs its handler in the main thread, at once.
    """
    noted = []
    try:
        previous = {signum: signal.signal(signum, lambda signum, frame: noted.append(signum))
                    for signum in _STOP_SIGNALS}
    except ValueError:  # not the main thread: signals are handled (and held) by the main thread only
        yield
        return
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if noted:
        signal.raise_signal(noted[0])  # acted on by the handler the block started with


def _init_worker():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # the mask is inherited from the starting process


def add_workers_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--workers`` option of the commands that use :func:`run_parallel`."""
    parser.add_argument('--workers', type=int, default=os.cpu_count() or 1,
                        help='processes working in parallel (default: one per CPU core)')


def add_max_pixels_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--max-pixels`` option: larger images are refused before they are decoded."""
    from esc_arch.images import DEFAULT_MAX_PIXELS

    parser.add_argument('--max-pixels', type=positive_int, default=DEFAULT_MAX_PIXELS, metavar='N',
                        help='refuse images of more than N pixels, checked from the file header before decoding '
                        f'(default: {DEFAULT_MAX_PIXELS}, about 13400x13400)')


def positive_int(text: str) -> int:
    """argparse type of options that must be at least 1 (e.g. ``--scale``)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be at least 1, got {value}')
    return value


def print_notice(command: str, message: str) -> None:
    """Print ``basicsr COMMAND: note: MESSAGE`` on stderr; ``partial(print_notice, COMMAND)`` is the
    ``notify`` of :func:`esc_arch.images.read_image` (picklable, so it works in worker processes too)."""
    print(f'basicsr {command}: note: {message}', file=sys.stderr)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt, so that the clean-up of an interrupted
    command (removing temporary files and folders) runs on ``kill`` as on Ctrl-C."""
    def interrupt(signum: int, frame: FrameType | None) -> NoReturn:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: signals cannot be handled here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def failure_report(command: str, failures: Sequence[str], output: str) -> ImageError:
    """The error that ends a command whose images ``failures`` (messages) could not be used, nothing written:
    the only failure itself, or (after printing each one) a summary."""
    if len(failures) == 1:
        return ImageError(f'{failures[0]}; nothing was written to {output}')
    for failure in failures:
        print(f'basicsr {command}: error: {failure}', file=sys.stderr)
    return ImageError(f'{len(failures)} images could not be used (listed above); nothing was written to {output}')



@contextmanager
def staged_output_folders(folders: Iterable[str], option: str) -> Iterator[dict[str, str]]:
    """Build new output folders completely or not at all.

    Each folder of ``folders`` must be new or empty (as :func:`esc_arch.images.new_output_folder`);
    the block writes into the hidden ``.NAME.partial`` folder beside it that the context yields
    (a dict: final folder -> folder to write), and each is renamed to its final name when the
    block succeeds. On any exception or interruption the partial folders, and the folders this
    created, are removed: no partial output blocks a rerun.
    """
    from esc_arch.images import new_output_folder

    created = []  # folders this makes (the outputs and their missing parents)
    staging = {}
    try:
        for folder in folders:
            folder = os.path.normpath(folder)
            missing = folder
            while missing and not os.path.exists(missing):
                created.append(missing)
                missing = os.path.dirname(missing)
            new_output_folder(folder, option)
            staging[folder] = os.path.join(os.path.dirname(folder), f'.{os.path.basename(folder)}.partial')
            shutil.rmtree(staging[folder], ignore_errors=True)  # left over from a killed run
            os.makedirs(staging[folder])
        yield dict(staging)
        for folder, partial_folder in staging.items():
            os.replace(partial_folder, folder)  # onto the empty folder
    except OSError as err:
        _remove(staging.values(), created)
        if isinstance(err, OutputError):
            raise
        raise OutputError(f'{option}: cannot write {err.filename or "the output"}: {err.strerror or err}') from None
    except BaseException:
        _remove(staging.values(), created)
        raise


def _remove(partial_folders: Iterable[str], created_folders: Iterable[str]) -> None:
    for folder in partial_folders:
        shutil.rmtree(folder, ignore_errors=True)
    for folder in sorted(created_folders, key=len, reverse=True):  # inner folders first
        try:
            os.rmdir(folder)  # only if still empty
        except OSError:
            pass
