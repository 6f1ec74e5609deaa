"""Resume BasicSR training on machines without CUDA.

basicsr 1.4.2's ``basicsr.train.load_resume_state`` loads the training state with
``map_location=storage.cuda(torch.cuda.current_device())``, which raises ``Torch not
compiled with CUDA enabled`` (or ``No CUDA GPUs are available``) on a CPU-only torch.
It also looks for ``--auto_resume`` states in ``experiments/<name>`` relative to the
working directory rather than in the experiment folder the options point to.

The replacement below keeps basicsr's behaviour otherwise (latest ``<iter>.state`` wins,
``check_resume`` re-points the network paths) and maps the state onto the device the
model trains on: the current CUDA device when ``num_gpu`` is not 0 and CUDA works, else
the CPU. States are read with ``weights_only`` (tensors and plain containers only). With
``--auto_resume``, an unreadable latest state (truncated, corrupt) is skipped, with a notice
naming it, for the newest readable one; none readable, or an unreadable ``path:resume_state``,
is a :class:`~esc_arch.errors.CheckpointError`.
"""
import inspect
import os
import pickle
import sys
from collections.abc import Callable

import torch

from esc_arch.errors import CheckpointError

from .safe_load import refused_global

__all__ = ['latest_training_state', 'load_resume_state', 'needs_fix', 'training_states']


def training_states(state_dir: str) -> list[tuple[int, str]]:
    """The ``<iter>.state`` files in ``state_dir`` as ``(iteration, path)``, newest first ([] if none)."""
    if not os.path.isdir(state_dir):
        return []
    iterations = [int(name[:-len('.state')]) for name in os.listdir(state_dir)
                  if name.endswith('.state') and name[:-len('.state')].isdigit()]
    return [(iteration, os.path.join(state_dir, f'{iteration}.state'))
            for iteration in sorted(iterations, reverse=True)]


def latest_training_state(state_dir: str) -> str | None:
    """Path of the ``<iter>.state`` file with the highest iteration in ``state_dir``.

    Args:
        state_dir (str): An experiment's ``training_states`` folder.

    Returns:
        str | None: None when the folder is missing or holds no state.
    """
    states = training_states(state_dir)
    return states[0][1] if states else None


def _read_state(path: str, device: torch.device) -> tuple:
    """The training state in ``path`` (tensors and plain containers only), or why the file is damaged.

    Only a damaged file gives a reason (so that ``--auto_resume`` falls back to an older state); a state
    that would run code, or no memory to map it, is an error: an older state would not be better.
    """
    try:
        return torch.load(path, map_location=device, weights_only=True), None
    except (torch.OutOfMemoryError, CheckpointError):  # the latter: refused by weights-only-torch-load
        raise
    except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError, OSError) as error:
        if refused_global(error):  # intact pickle, refused by weights_only
            raise CheckpointError(f'{path} was refused: loading it would run code (only tensors and plain '
                                  'containers are loaded)') from None
        lines = str(error).strip().splitlines()
        return None, (lines[0] if lines else type(error).__name__)


def _state_device(opt: dict) -> torch.device:
    if opt.get('num_gpu', 0) != 0 and torch.cuda.is_available():
        return torch.device('cuda', torch.cuda.current_device())
    return torch.device('cpu')


def load_resume_state(opt: dict) -> dict | None:
    """Drop-in replacement for ``basicsr.train.load_resume_state``.

    Args:
        opt (dict): Parsed training options (``opt['path']['training_states']`` is set by
            basicsr's ``parse_options``).

    Returns:
        dict | None: The training state, or None when there is nothing to resume.
    """
    from basicsr.utils import check_resume

    device = _state_device(opt)
    if opt['auto_resume']:
        states = training_states(opt['path']['training_states'])
        skipped = []
        for _, path in states:
            resume_state, problem = _read_state(path, device)
            if resume_state is not None:
                opt['path']['resume_state'] = path
                resume_state['skipped_states'] = skipped
                check_resume(opt, resume_state['iter'])
                return resume_state
            # ESC writes states atomically, but a copy, a full disk or another tool can leave a broken file.
            skipped.append(path)
            print(f'Skipping the unreadable training state {path} ({problem}).', file=sys.stderr)
        if states:
            raise CheckpointError(f'--auto_resume: none of the {len(states)} training state(s) in '
                                  f'{opt["path"]["training_states"]} can be read (last error: {problem})')
    path = opt['path'].get('resume_state')
    if not path:
        return None
    resume_state, problem = _read_state(path, device)
    if resume_state is None:
        raise CheckpointError(f'path:resume_state {path} cannot be read as a training state: {problem}')
    check_resume(opt, resume_state['iter'])
    return resume_state


def needs_fix(function: Callable) -> bool:
    """Whether basicsr's ``load_resume_state`` hard-codes CUDA (unreadable source counts as yes)."""
    try:
        return '.cuda(' in inspect.getsource(function)
    except (OSError, TypeError):
        return True

