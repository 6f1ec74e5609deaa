"""Resume BasicSR training on machines without CUDA.

basicsr 1.4.2's ``basicsr.train.load_resume_state`` loads the training state with
``map_location=storage.cuda(torch.cuda.current_device())``, which raises ``Torch not
compiled with CUDA enabled`` (or ``No CUDA GPUs are available``) on a CPU-only torch.
It also looks for ``--auto_resume`` states in ``experiments/<name>`` relative to the
working directory rather than in the experiment folder the options point to.

The replacement below keeps basicsr's behaviour otherwise (latest ``<iter>.state`` wins,
``check_resume`` re-points the network paths) and maps the state onto the device the
model trains on: the current CUDA device when ``num_gpu`` is not 0 and CUDA works, else
the CPU.
"""
import inspect
import os

import torch


def latest_training_state(state_dir):
    """Path of the ``<iter>.state`` file with the highest iteration in ``state_dir``.

    Args:
        state_dir (str): An experiment's ``training_states`` folder.

    Returns:
        str | None: None when the folder is missing or holds no state.
    """
    if not os.path.isdir(state_dir):
        return None
    iterations = [int(name[:-len('.state')]) for name in os.listdir(state_dir)
                  if name.endswith('.state') and name[:-len('.state')].isdigit()]
    if not iterations:
        return None
    return os.path.join(state_dir, f'{max(iterations)}.state')


def _state_device(opt):
    if opt.get('num_gpu', 0) != 0 and torch.cuda.is_available():
        return torch.device('cuda', torch.cuda.current_device())
    return torch.device('cpu')


def load_resume_state(opt):
    """Drop-in replacement for ``basicsr.train.load_resume_state``.

    Args:
        opt (dict): Parsed training options (``opt['path']['training_states']`` is set by
            basicsr's ``parse_options``).

    Returns:
        dict | None: The training state, or None when there is nothing to resume.
    """
    from basicsr.utils import check_resume

    if opt['auto_resume']:
        found = latest_training_state(opt['path']['training_states'])
        if found is not None:
            opt['path']['resume_state'] = found
    state_path = opt['path'].get('resume_state')
    if not state_path:
        return None
    resume_state = torch.load(state_path, map_location=_state_device(opt), weights_only=True)
    check_resume(opt, resume_state['iter'])
    return resume_state


def needs_fix(function):
    """Whether basicsr's ``load_resume_state`` hard-codes CUDA (unreadable source counts as yes)."""
    try:
        return '.cuda(' in inspect.getsource(function)
    except (OSError, TypeError):
        return True


def apply():
    import basicsr.train

    original = basicsr.train.load_resume_state
    if original is not load_resume_state and needs_fix(original):
        load_resume_state.replaced = original  # kept for the tests, which show the original failing
        basicsr.train.load_resume_state = load_resume_state
