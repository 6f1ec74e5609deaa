"""Progress of validation and testing: BasicSR's bar on a terminal, one log line per image otherwise.

BasicSR's ``SRModel.nondist_validation`` shows a tqdm bar when ``val.pbar`` is true; in a log file (a
cluster job, ``basicsr test > log``) a bar is a stream of carriage returns, so there each image is
logged on its own line instead.
"""
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TextIO


class LoggedProgress:
    """A validation dataloader that logs ``Test DATASET i/n: NAME`` before each of its images.

    It passes on what BasicSR's validation reads from the loader: iteration, ``len`` and ``dataset``.

    Args:
        loader: The dataloader (batches of one image with an ``lq_path``).
        log (Callable[[str], None]): Receives the lines.
    """

    def __init__(self, loader: Iterable[dict], log: Callable[[str], None]) -> None:
        self.loader = loader
        self.dataset = loader.dataset
        self.log = log

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator:
        name, total = self.dataset.opt.get('name', 'dataset'), len(self.loader)
        for index, batch in enumerate(self.loader, 1):
            paths = batch.get('lq_path') or batch.get('gt_path') or ['']
            self.log(f'Test {name} {index}/{total}: {str(paths[0]).rsplit("/", 1)[-1]}')
            yield batch


def progress_choice(val_opt: dict, is_train: bool, stream: TextIO | None = None) -> tuple[bool, bool]:
    """How validation shows progress: ``(tqdm bar, log line per image)``.

    ``val.pbar`` decides, and defaults to on for testing (``basicsr test``) and off during training; the
    bar becomes log lines when ``stream`` (default: stderr) is not a terminal.
    """
    wanted = val_opt.get('pbar')
    wanted = (not is_train) if wanted is None else bool(wanted)
    stream = sys.stderr if stream is None else stream
    on_terminal = hasattr(stream, 'isatty') and stream.isatty()
    return wanted and on_terminal, wanted and not on_terminal
