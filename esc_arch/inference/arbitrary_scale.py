"""Arbitrary-scale networks (ESC+LTE) in the inference path: the ``ESC-LTE`` preset, loading, whole/tiled upscaling.

An arbitrary-scale network has no scale of its own: the scale is a request (``--scale 3.5``), the
output of an ``h x w`` image is ``round(h * S) x round(w * S)``, and every output pixel is queried.
"""
from pathlib import Path

import yaml
from basicsr.archs import build_network
from torch import nn

from esc_arch.archs.esc_lte import ESC_LTE_CONFIG, ESC_LTE_PRESET, ESCLTE
from esc_arch.checkpoint import load_into_network
from esc_arch.errors import OptionsError

__all__ = ['arbitrary_scale_options', 'is_arbitrary_scale', 'load_arbitrary_scale_network', 'output_size']

ARBITRARY_SCALE_TYPES = ('ESCLTE', )
_LTE_KEYS = ('encoder.plk_filter', 'imnet.layers.0.weight')


def is_arbitrary_scale(network: nn.Module) -> bool:
    """Whether ``network`` (possibly wrapped by ``torch.compile``) upscales by any factor (ESCLTE)."""
    return isinstance(getattr(network, '_orig_mod', network), ESCLTE)


def arbitrary_scale_options(model: str | Path | None, state_dict: dict | None = None) -> dict | None:
    """``network_g`` options when ``model`` names an arbitrary-scale network, else None.

    ``model`` is the ``ESC-LTE`` preset (any case), a YAML whose ``network_g`` type is ``ESCLTE``, or
    None with ESCLTE weights (then the published configuration; other sizes need a YAML).
    """
    if model is None:
        if state_dict is not None and all(key in state_dict for key in _LTE_KEYS):
            return dict(ESC_LTE_CONFIG)
        return None
    if str(model).lower() == ESC_LTE_PRESET.lower():
        return dict(ESC_LTE_CONFIG)
    path = Path(model)
    if path.suffix.lower() in ('.yml', '.yaml') and path.is_file():
        try:
            network_g = (yaml.safe_load(path.read_text()) or {}).get('network_g')
        except (OSError, yaml.YAMLError, AttributeError):
            return None  # network_options explains what is wrong with the file
        if isinstance(network_g, dict) and network_g.get('type') in ARBITRARY_SCALE_TYPES:
            return dict(network_g)
    return None


def load_arbitrary_scale_network(options: dict, state_dict: dict | None, scale: float | None,
                                 source: str) -> tuple[nn.Module, float]:
    """Build the arbitrary-scale network of ``options``, load ``state_dict`` strictly, convert it for inference.

    Raises:
        OptionsError: No ``scale`` (it cannot be read from the weights), or one that is not positive.
        CheckpointError: The weights do not fit the network.
    """
    if not scale:
        raise OptionsError(f'{options["type"]} upscales by any factor: give --scale (e.g. 3.5)')
    if not scale > 0:
        raise OptionsError(f'--scale must be positive; got {scale}')
    try:
        network = build_network(dict(options))
    except (TypeError, ValueError, KeyError) as err:
        raise OptionsError(f'cannot build network {options.get("type")!r}: {err}') from None
    if state_dict is not None:
        load_into_network(network, state_dict, source=source)
    return network.convert().eval(), scale


def output_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """``round(height * scale) x round(width * scale)``, at least 1x1."""
    return max(round(height * scale), 1), max(round(width * scale), 1)

