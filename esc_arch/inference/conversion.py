"""Converting weight files between formats: the authors' checkpoints, BasicSR ``.pth`` and ``.safetensors``.

Every format the package reads is accepted as input (see :mod:`esc_arch.checkpoint`): a BasicSR
checkpoint (``params_ema`` / ``params``), the arbitrary-scale authors' ``{'model': {'name', 'args',
'sd'}}`` (ESC+LTE), a bare state dict, or a ``.safetensors`` file. The output format follows the
target's extension: ``.pth`` is a BasicSR checkpoint ``{param_key: state_dict}`` (what options'
``pretrain_network_g`` and ``basicsr upscale --weights`` read), ``.safetensors`` a flat state dict.
"""
import os
from pathlib import Path

import torch

from esc_arch.checkpoint import SAFETENSORS_SUFFIX, STATE_DICT_KEYS, extract_state_dict, read_checkpoint
from esc_arch.errors import CheckpointError, OutputError

__all__ = ['PARAM_KEYS', 'TARGET_SUFFIXES', 'convert_weights']

PARAM_KEYS = STATE_DICT_KEYS
TARGET_SUFFIXES = ('.pth', SAFETENSORS_SUFFIX)


def convert_weights(source: str | Path, target: str | Path, param_key: str = 'params_ema',
                    overwrite: bool = False) -> dict[str, torch.Tensor]:
    """Write the network weights of ``source`` to ``target`` in the format of its extension.

    Args:
        source (str | Path): Any weight file the package reads.
        target (str | Path): ``.pth`` (BasicSR checkpoint) or ``.safetensors``.
        param_key (str): ``params_ema`` or ``params``: the entry read from a BasicSR source that has
            such entries, and the entry written to a ``.pth`` target. Default: ``params_ema``.
        overwrite (bool): Replace an existing ``target`` (never the source). Default: False.

    Returns:
        dict[str, Tensor]: The state dict written.

    Raises:
        CheckpointError: The source is unreadable, unsafe, or a BasicSR checkpoint without ``param_key``.
        OutputError: Bad target extension, target is the source, or it exists and ``overwrite`` is off.
    """
    source, target = Path(source), Path(target)
    if param_key not in PARAM_KEYS:
        raise CheckpointError(f'param key must be one of {", ".join(PARAM_KEYS)}; got {param_key!r}')
    suffix = target.suffix.lower()
    if suffix not in TARGET_SUFFIXES:
        raise OutputError(f'{target}: the output must end in {" or ".join(TARGET_SUFFIXES)}')
    checkpoint = read_checkpoint(source)
    if target.exists():
        if target.resolve() == source.resolve():
            raise OutputError(f'refusing to overwrite the input {source}: choose another output file')
        if not target.is_file():
            raise OutputError(f'{target} exists and is not a file')
        if not overwrite:
            raise OutputError(f'{target} exists: pass --overwrite to replace it')
    entries = [key for key in PARAM_KEYS if isinstance(checkpoint.get(key), dict)]
    if entries and param_key not in entries:
        raise CheckpointError(f'{source} has no {param_key!r} entry (it has {", ".join(entries)}): '
                              f'choose --param-key {entries[0]}')
    state_dict = {name: value.detach().cpu().contiguous() for name, value in
                  extract_state_dict(checkpoint, param_key, source=str(source)).items()}
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f'.{target.name}.{os.getpid()}.part')
    try:
        if suffix == SAFETENSORS_SUFFIX:
            _save_safetensors(state_dict, temporary, param_key)
        else:
            torch.save({param_key: state_dict}, temporary)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return state_dict


def _save_safetensors(state_dict: dict[str, torch.Tensor], path: Path, param_key: str) -> None:
    """``state_dict`` as a safetensors file, the param key kept in its metadata."""
    try:
        from safetensors.torch import save_file
    except ImportError:
        raise OutputError('writing .safetensors files needs the safetensors package: '
                          'pip install "esc-arch[safetensors]"') from None
    # safetensors refuses tensors sharing memory: give each its own copy
    save_file({name: value.clone() for name, value in state_dict.items()}, str(path),
              metadata={'format': 'pt', 'param_key': param_key})
