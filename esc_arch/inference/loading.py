"""Networks ready for inference: built from a preset or an options YAML, weights loaded safely, on a device."""
from pathlib import Path

import torch
import yaml
from basicsr.archs import build_network
from torch import nn

from esc_arch.archs import preset_config
from esc_arch.checkpoint import extract_state_dict, infer_network_config, load_into_network, load_state_dict
from esc_arch.errors import CheckpointError, ESCError, OptionsError

from .arbitrary_scale import arbitrary_scale_options, load_arbitrary_scale_network

__all__ = ['PRECISIONS', 'load_network', 'network_options', 'select_device']

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


def load_network(model: str | Path | None, weights: str | Path | dict | None = None,
                 scale: int | None = None) -> tuple[nn.Module, int]:
    """Build the network named by ``model``, load ``weights`` into it and convert it for inference.

    Args:
        model (str | Path | None): Preset name or path to a YAML with ``network_g``; None: the network that
            ``weights`` determine (ESC-family weights, :func:`esc_arch.checkpoint.infer_network_config`).
        weights (str | Path | dict | None): Checkpoint path, or a checkpoint/state dict already loaded; None
            keeps the initial weights.
        scale (int | None): Upscaling factor; None takes the checkpoint's (else the preset's x4
            or the YAML's). An arbitrary-scale network (preset ``ESC-LTE``, type ``ESCLTE``) takes
            any positive number and needs it.

    Returns:
        tuple[nn.Module, int]: The converted network in eval mode, and its scale.

    Raises:
        OptionsError: Unknown preset, unusable YAML, or a network whose scale is unknown.
        CheckpointError: The checkpoint is unreadable, unsafe, does not fit the network or was trained
            for another scale than ``scale``.
    """
    source = 'the given state dict' if isinstance(weights, dict) else str(weights)
    if isinstance(weights, dict):
        state_dict = extract_state_dict(weights, source=source)
    else:
        state_dict = load_state_dict(weights) if weights else None
    arbitrary_scale = arbitrary_scale_options(model, state_dict)
    if arbitrary_scale is not None:  # ESC-LTE: no scale of its own, any --scale
        return load_arbitrary_scale_network(arbitrary_scale, state_dict, scale, source)
    try:
        trained_scale = infer_network_config(state_dict)['upscaling_factor'] if state_dict else None
    except CheckpointError:
        trained_scale = None  # not ESC-family: load_into_network below explains the mismatch
    if scale and trained_scale and scale != trained_scale:
        raise CheckpointError(f'--scale {scale} does not match {source}, which was trained for x{trained_scale}')
    if model is not None:
        options = network_options(model, scale or trained_scale)
    elif state_dict is None:
        raise OptionsError('no network given: name a preset or an options file (--model), or give weights')
    else:
        try:
            options = infer_network_config(state_dict)
        except CheckpointError as err:
            raise CheckpointError(f'{source}: {err}; name its network with --model') from None
        model = source
    try:
        network = build_network(options)
    except (TypeError, ValueError, KeyError) as err:
        raise OptionsError(f'cannot build network {options.get("type")!r} from {model}: {err}') from None
    if state_dict is not None:
        load_into_network(network, state_dict, source=source)
    network_scale = getattr(network, 'upscaling_factor', scale)
    if not network_scale:
        raise OptionsError(f'the scale of {options["type"]} is unknown: give --scale')
    if hasattr(network, 'convert'):
        network.convert()
    return network.eval(), network_scale


def network_options(model: str | Path, scale: int | None) -> dict:
    """``network_g`` options for a preset name or a BasicSR YAML, at ``scale`` when given.

    Raises:
        OptionsError: ``model`` is neither a preset nor a readable YAML with a ``network_g`` that has a ``type``.
    """
    path = Path(model)
    if path.suffix.lower() in ('.yml', '.yaml') or path.is_file():
        try:
            options = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as err:
            raise OptionsError(f'cannot read options file {path}: {err}') from None
        if not isinstance(options, dict) or not isinstance(options.get('network_g'), dict):
            raise OptionsError(f'{path} has no network_g section')
        options = dict(options['network_g'])
        if 'type' not in options:
            raise OptionsError(f'network_g in {path} has no type')
        if scale:
            options['upscaling_factor'] = scale
        return options
    try:
        return preset_config(str(model), scale=scale or 4)
    except ValueError as err:
        raise OptionsError(f'{err} (or give a YAML file)') from None
