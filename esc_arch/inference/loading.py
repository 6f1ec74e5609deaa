"""Networks ready for inference: built from a preset or an options YAML, weights loaded safely, on a device."""
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from esc_arch.archs import build_network
from esc_arch.archs.introspection import is_arbitrary_scale, network_scale
from esc_arch.checkpoint import (
    adapt_state_dict,
    extract_state_dict,
    infer_network_config,
    load_into_network,
    load_state_dict,
    state_dict_scale,
)
from esc_arch.errors import CheckpointError, ESCError, OptionsError

__all__ = ['PRECISIONS', 'load_network', 'select_device']

PRECISIONS = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}


def select_device(name: str) -> torch.device:
    """The device called ``name`` (``cpu``, ``cuda``); ``auto`` picks CUDA when available.

    Raises:
        ESCError: ``cuda`` is asked for but no CUDA device is available.
    """
    if name == 'cuda' and not torch.cuda.is_available():
        raise ESCError('--device cuda was asked for but no CUDA device is available')
    if name == 'auto':
        name = 'cuda' if torch.cuda.is_available() else 'cpu'
    return torch.device(name)


def load_network(model: str | Path | dict | None, weights: str | Path | dict | None = None,
                 scale: float | None = None, notify: Callable[[str], None] | None = None) -> tuple[nn.Module, float]:
    """Build the network named by ``model``, load ``weights`` into it and convert it for inference.

    Args:
        model (str | Path | dict | None): Preset name, path to a YAML with ``network_g``, or ``network_g``
            options (see :func:`esc_arch.archs.build_network`); None: the network that ``weights`` determine
            (ESC-family weights, :func:`esc_arch.checkpoint.infer_network_config`).
        weights (str | Path | dict | None): Checkpoint path, or a checkpoint/state dict already loaded; None
            keeps the initial weights.
        scale (float | None): The scale; None takes the checkpoint's (else the preset's x4 or the YAML's).
            An arbitrary-scale network (preset ``ESC-LTE``, type ``ESCLTE``) takes any positive number and
            needs it.
        notify (Callable[[str], None] | None): Told in one line when the weights were adapted to the network
            (:func:`esc_arch.checkpoint.adapt_state_dict`).

    Returns:
        tuple[nn.Module, float]: The converted network in eval mode, and its scale.

    Raises:
        OptionsError: Unknown preset or one at a scale it is not offered at, unusable YAML, or a network
            whose scale is unknown.
        CheckpointError: The checkpoint is unreadable, unsafe, does not fit the network or was trained
            for another scale than ``scale``.
    """
    source = 'the given state dict' if isinstance(weights, dict) else str(weights)
    if isinstance(weights, dict):
        state_dict = extract_state_dict(weights, source=source)
    else:
        state_dict = load_state_dict(weights) if weights else None
    if model is None:
        model = options_of_weights(state_dict, source)
    checkpoint_scale = state_dict_scale(state_dict) if state_dict is not None else None
    if scale and checkpoint_scale and scale != checkpoint_scale:
        raise CheckpointError(f'--scale {scale} does not match {source}, which was trained for x{checkpoint_scale}')
    network = build_network(model, scale or checkpoint_scale)
    if state_dict is not None:
        load_into_network(network, adapt_state_dict(state_dict, network, notify), source=source)
    return network.convert().eval() if hasattr(network, 'convert') else network.eval(), _scale_of(network, scale)


def options_of_weights(state_dict: dict | None, source: str) -> dict:
    """The ``network_g`` options that ``state_dict`` determines (no ``--model``)."""
    if state_dict is None:
        raise OptionsError('no network given: name a preset or an options file (--model), or give weights')
    try:
        return infer_network_config(state_dict)
    except CheckpointError as err:
        raise CheckpointError(f'{source}: {err}; name its network with --model') from None


def _scale_of(network: nn.Module, requested: float | None) -> float:
    """The network's own scale, else (an arbitrary-scale network) the requested one, which must then be given."""
    scale = network_scale(network) or requested
    if not scale:
        need = 'upscales by any factor' if is_arbitrary_scale(network) else 'has no scale of its own'
        raise OptionsError(f'{type(network).__name__} {need}: give --scale (e.g. 3.5)')
    if not scale > 0:
        raise OptionsError(f'--scale must be positive; got {scale}')
    return scale
