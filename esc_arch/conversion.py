"""Converting weight files between formats: the authors' checkpoints, BasicSR ``.pth`` and ``.safetensors``.

Every format the package reads is accepted as input (see :mod:`esc_arch.checkpoint`): a BasicSR
checkpoint (``params_ema`` / ``params``), the arbitrary-scale authors' ``{'model': {'name', 'args',
'sd'}}`` (ESC+LTE), a bare state dict, or a ``.safetensors`` file. The output format follows the
target's extension: ``.pth`` is a BasicSR checkpoint ``{param_key: state_dict}`` (what options'
``pretrain_network_g`` and ``basicsr upscale --weights`` read), ``.safetensors`` a flat state dict.

What is written is checked first: plain tensors only (no meta or sparse tensors), floating point of a
type the networks use (float32, float16, bfloat16; ``dtype`` converts others such as float64), and
weights that load strictly into their network (inferred from the weights, or named by ``model``).
"""
import io
from pathlib import Path

import torch

from esc_arch.checkpoint import SAFETENSORS_SUFFIX, STATE_DICT_KEYS, extract_state_dict, read_checkpoint
from esc_arch.defaults import WEIGHT_DTYPES
from esc_arch.errors import CheckpointError, OutputError
from esc_arch.files import atomic_output

__all__ = ['DTYPES', 'PARAM_KEYS', 'TARGET_SUFFIXES', 'check_plain_tensors', 'convert_weights']

PARAM_KEYS = STATE_DICT_KEYS
TARGET_SUFFIXES = ('.pth', SAFETENSORS_SUFFIX)
DTYPES = {name: getattr(torch, name) for name in WEIGHT_DTYPES}
"""The floating-point types weights may be written in, by name (``--dtype``)."""


def convert_weights(source: str | Path, target: str | Path, param_key: str = 'params_ema',
                    overwrite: bool = False, model: str | Path | None = None,
                    dtype: str | None = None) -> dict[str, torch.Tensor]:
    """Write the network weights of ``source`` to ``target`` in the format of its extension.

    Args:
        source (str | Path): Any weight file the package reads.
        target (str | Path): ``.pth`` (BasicSR checkpoint) or ``.safetensors``.
        param_key (str): ``params_ema`` or ``params``: the entry read from a BasicSR source that has
            such entries, and the entry written to a ``.pth`` target. Default: ``params_ema``.
        overwrite (bool): Replace an existing ``target`` (never the source). Default: False.
        model (str | Path | None): The network the weights must fit: a preset name or a YAML with
            ``network_g``; None infers it from the weights (ESC-family, or the published ESC+LTE).
        dtype (str | None): Store every tensor as this type (a key of :data:`DTYPES`); None keeps the
            source's, which must then be one of them.

    Returns:
        dict[str, Tensor]: The state dict written.

    Raises:
        CheckpointError: The source is unreadable, unsafe, holds meta/sparse tensors, tensors of another
            type, weights that do not fit the network, or is a BasicSR checkpoint without ``param_key``.
        OutputError: Bad target extension, target is the source, it exists and ``overwrite`` is off,
            or it cannot be written (read-only or full disk, a file where a folder should be).
    """
    source, target = Path(source), Path(target)
    if param_key not in PARAM_KEYS:
        raise CheckpointError(f'param key must be one of {", ".join(PARAM_KEYS)}; got {param_key!r}')
    if dtype is not None and dtype not in DTYPES:
        raise CheckpointError(f'dtype must be one of {", ".join(DTYPES)}; got {dtype!r}')
    suffix = target.suffix.lower()
    if suffix not in TARGET_SUFFIXES:
        raise OutputError(f'{target}: the output must end in {" or ".join(TARGET_SUFFIXES)}')
    _check_target(source, target, overwrite)
    checkpoint = read_checkpoint(source)
    check_plain_tensors(checkpoint, str(source))
    entries = [key for key in PARAM_KEYS if isinstance(checkpoint.get(key), dict)]
    if entries and param_key not in entries:
        raise CheckpointError(f'{source} has no {param_key!r} entry (it has {", ".join(entries)}): '
                              f'choose --param-key {entries[0]}')
    state_dict = _as_dtype(extract_state_dict(checkpoint, param_key, source=str(source)), dtype, str(source))
    _check_fits_network(state_dict, model, str(source))
    with atomic_output(target) as temporary:
        temporary.write_bytes(_serialise(state_dict, suffix, param_key))
    return state_dict


def _check_target(source: Path, target: Path, overwrite: bool) -> None:
    if not target.exists():
        return
    if target.resolve() == source.resolve():
        raise OutputError(f'refusing to overwrite the input {source}: choose another output file')
    if not target.is_file():
        raise OutputError(f'{target} exists and is not a file')
    if not overwrite:
        raise OutputError(f'{target} exists: pass --overwrite to replace it')


def check_plain_tensors(checkpoint: object, source: str = 'checkpoint', where: str = '') -> None:
    """Refuse tensors that hold no values here (meta) or are not dense (sparse, ...), anywhere in ``checkpoint``.

    Raises:
        CheckpointError: Naming the first such tensor.
    """
    if isinstance(checkpoint, torch.Tensor):
        if checkpoint.is_meta:
            raise CheckpointError(f'{source} holds a meta tensor at {where or "top level"} (shape only, no values): '
                                  'not usable weights')
        if checkpoint.layout != torch.strided:
            raise CheckpointError(f'{source} holds a {checkpoint.layout} tensor at {where or "top level"}: only '
                                  'dense tensors are weights; save it with .to_dense()')
    elif isinstance(checkpoint, dict):
        for key, value in checkpoint.items():
            check_plain_tensors(value, source, f'{where}.{key}' if where else str(key))
    elif isinstance(checkpoint, (list, tuple)):
        for index, value in enumerate(checkpoint):
            check_plain_tensors(value, source, f'{where}[{index}]')


def _as_dtype(state_dict: dict[str, torch.Tensor], dtype: str | None, source: str) -> dict[str, torch.Tensor]:
    """The tensors as ``dtype`` (detached, on the CPU, contiguous); without ``dtype`` they must be of :data:`DTYPES`."""
    allowed = set(DTYPES.values())
    for key, value in state_dict.items():
        if not value.is_floating_point():
            raise CheckpointError(f'{source}: {key} is {str(value.dtype).removeprefix("torch.")}; network weights are '
                                  f'floating point ({", ".join(DTYPES)})')
        if dtype is None and value.dtype not in allowed:
            raise CheckpointError(f'{source}: {key} is {str(value.dtype).removeprefix("torch.")}; the networks use '
                                  f'{", ".join(DTYPES)}: pass --dtype float32 to store it as float32')
    target_type = DTYPES.get(dtype)
    return {key: value.detach().to('cpu', target_type or value.dtype).contiguous()
            for key, value in state_dict.items()}


def _check_fits_network(state_dict: dict[str, torch.Tensor], model: str | Path | None, source: str) -> None:
    """Refuse weights that do not load strictly into their network (wrong shapes, missing or foreign keys)."""
    from esc_arch.archs.factory import network_options, scale_argument
    from esc_arch.inference.loading import load_network, options_of_weights

    options = options_of_weights(state_dict, source) if model is None else network_options(model)
    any_scale = 1.0 if scale_argument(options['type']) is None else None  # an arbitrary-scale network needs one
    try:
        load_network(model, {'params': state_dict}, any_scale)
    except CheckpointError as err:
        raise CheckpointError(f'{source}: {err}') from None


def _serialise(state_dict: dict[str, torch.Tensor], suffix: str, param_key: str) -> bytes:
    """The file's bytes: a BasicSR ``.pth`` or a safetensors file (param key kept in its metadata)."""
    if suffix != SAFETENSORS_SUFFIX:
        buffer = io.BytesIO()
        torch.save({param_key: state_dict}, buffer)
        return buffer.getvalue()
    try:
        from safetensors.torch import save
    except ImportError:
        raise OutputError('writing .safetensors files needs the safetensors package: '
                          'pip install "esc-arch[safetensors]"') from None
    # safetensors refuses tensors sharing memory: give each its own copy
    return save({name: value.clone() for name, value in state_dict.items()},
                metadata={'format': 'pt', 'param_key': param_key})
