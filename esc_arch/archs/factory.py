"""The one way to build a network: from a preset name, an options file or ``network_g`` options (timm's create_model).

:func:`build_network` serves the commands, ``profile``, the spandrel integration and the option
checks alike; it builds any network registered in BasicSR's ARCH_REGISTRY (ESC's and BasicSR's own,
e.g. SwinIR), and sets the scale on the constructor argument that takes it
(:data:`~esc_arch.archs.introspection.SCALE_ATTRIBUTES`).
"""
import inspect
import os
from collections.abc import Mapping
from pathlib import Path

from torch import nn

from esc_arch.errors import OptionsError

from basicsr.utils.registry import ARCH_REGISTRY

from .introspection import SCALE_ATTRIBUTES
from .presets import preset_config, preset_name

__all__ = ['OPTIONS_SUFFIXES', 'build_network', 'build_preset', 'create_network', 'is_options_file',
           'network_options', 'read_network_options', 'scale_argument']

OPTIONS_SUFFIXES = ('.yml', '.yaml')

NetworkSource = str | os.PathLike | Mapping
"""A preset name (any case), the path of a BasicSR options file (its ``network_g``), or ``network_g`` options."""


def is_options_file(model: str | os.PathLike) -> bool:
    """Whether ``model`` names an options file rather than a preset (a ``.yml``/``.yaml`` name, or an existing file)."""
    path = Path(model)
    return path.suffix.lower() in OPTIONS_SUFFIXES or path.is_file()


def read_network_options(path: str | os.PathLike) -> dict:
    """The ``network_g`` section of a BasicSR options file, read safely by the project's options loader.

    Raises:
        OptionsError: The file is missing, unreadable, not plain YAML, or has no ``network_g`` with a ``type``.
    """
    from esc_arch.options.loading import load_options  # options/ sits above archs/: import when used

    try:
        options = load_options(str(path))
    except OSError as err:
        raise OptionsError(f'cannot read options file {path}: {err.strerror or err}') from None
    network_g = options.get('network_g') if isinstance(options, dict) else None
    if not isinstance(network_g, dict):
        raise OptionsError(f'{path} has no network_g section')
    if 'type' not in network_g:
        raise OptionsError(f'network_g in {path} has no type')
    return dict(network_g)


def registered_network(type_name: object) -> type[nn.Module]:
    """The network class registered in BasicSR's ARCH_REGISTRY as ``type_name``.

    Raises:
        OptionsError: No network of that name is registered.
    """
    try:
        return ARCH_REGISTRY.get(type_name)
    except KeyError:
        raise OptionsError(f'network type {type_name!r} is not registered in BasicSR\'s ARCH_REGISTRY') from None


def scale_argument(type_name: object) -> str | None:
    """The constructor argument that sets the scale of a registered network type; None where it has none
    (an arbitrary-scale network such as ESCLTE)."""
    parameters = inspect.signature(registered_network(type_name)).parameters
    return next((name for name in SCALE_ATTRIBUTES if name in parameters), None)


def network_options(model: NetworkSource, scale: float | None = None, **overrides: object) -> dict:
    """The ``network_g`` options of ``model`` at ``scale`` (when given), ``overrides`` applied.

    Args:
        model (str | PathLike | Mapping): A preset name (any case), an options file, or ``network_g`` options.
        scale (float | None): The scale, set on the constructor argument that takes it (see
            :func:`scale_argument`); ignored for an arbitrary-scale network. Default: a preset's x4, the file's
            or the mapping's own (else the constructor's default).
        **overrides: Options that replace the source's, e.g. ``attn_type='sdpa'``.

    Raises:
        OptionsError: Unknown preset, a preset scale it is not offered at, an unusable options file, or a type that
            is not registered.
    """
    if isinstance(model, Mapping):
        options = dict(model)
        if 'type' not in options:
            raise OptionsError('network_g has no type (the network class)')
    elif is_options_file(model):
        options = read_network_options(model)
    else:
        try:
            name = preset_name(model)
        except OptionsError as err:
            raise OptionsError(f'{err}, or give an options file (.yml)') from None
        return preset_config(name, scale, **overrides)
    key = scale_argument(options['type'])
    if scale is not None and key is not None:
        options[key] = scale
    return {**options, **overrides}


def create_network(options: Mapping, where: str = 'network_g') -> nn.Module:
    """Build the registered network of ``network_g`` options as they are.

    Args:
        options (Mapping): ``type`` and the constructor's keyword arguments.
        where (str): What the options are, for messages. Default: ``network_g``.

    Raises:
        OptionsError: The type is not registered or its constructor refuses the options (one line).
    """
    if 'type' not in options:
        raise OptionsError(f'{where} has no type (the network class)')
    cls = registered_network(options['type'])
    try:
        return cls(**{key: value for key, value in options.items() if key != 'type'})
    except (TypeError, ValueError, KeyError) as err:
        raise OptionsError(f'{where} ({options["type"]}): {err}') from None


def build_network(model: NetworkSource, scale: float | None = None, **overrides: object) -> nn.Module:
    """Build a network from a preset name, an options file or ``network_g`` options (see :func:`network_options`).

    e.g. ``build_network('ESC-light', scale=2, attn_type='sdpa')``, ``build_network('options/test/x.yml')``,
    ``build_network({'type': 'ESC', 'dim': 32, 'upscaling_factor': 3})``.

    Raises:
        OptionsError: See :func:`network_options` and :func:`create_network`.
    """
    if isinstance(model, Mapping):
        where = 'network_g'
    elif is_options_file(model):
        where = f'network_g in {model}'
    else:
        where = f'preset {model}'
    return create_network(network_options(model, scale, **overrides), where)


def build_preset(name: str, scale: float | None = None, **overrides: object) -> nn.Module:
    """Build a published variant, e.g. ``build_preset('ESC-light', scale=2, attn_type='sdpa')`` (default x4).

    Raises:
        OptionsError: Unknown preset, or a scale it is not offered at.
    """
    return create_network(preset_config(name, scale, **overrides), f'preset {name}')
