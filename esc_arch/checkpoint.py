"""Safe checkpoint loading for ESC networks: reading, adapting to the network, inferring its configuration.

Checkpoints are read with ``torch.load(weights_only=True)``: plain tensors and containers only, so
a file that would run code when unpickled is refused instead of executed. BasicSR checkpoints keep
the weights under ``params_ema`` (EMA) or ``params``; bare state dicts are accepted too, with the
``module.`` prefix of DataParallel/DDP checkpoints removed. The arbitrary-scale authors' format
``{'model': {'name', 'args', 'sd'}}`` (ESC+LTE) gives its ``sd``. ``.safetensors`` files (a flat
state dict) are read with the optional ``safetensors`` package.

Before a strict load, :func:`adapt_state_dict` adapts weights to the network explicitly (a pixel-shuffle
head of another scale is resampled, and the caller is told); :func:`infer_network_config` reads a
network's ``config`` back from its weights.
"""
import math
import pickle
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch

from .archs.heads import PIXEL_SHUFFLE_HEAD, PixelShuffleHeadMixin, real_upsampler_scale, resample_head_of
from .archs.introspection import bare_network
from .archs.presets import PRESETS
from .defaults import SAFETENSORS_SUFFIX, STATE_DICT_KEYS
from .errors import CheckpointError

_SHOWN_KEYS = 3
ZIP_EXPANSION_MARGIN = 64 << 20
"""A zip checkpoint's entries may declare at most twice the file's size plus this many bytes in all
(torch stores them uncompressed, so a real checkpoint declares about its own size)."""
_LTE_KEYS = ('encoder.plk_filter', 'coef.weight', 'imnet.layers.0.weight')


def read_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint file without executing code from it.

    Args:
        path (str | Path): The ``.pth`` file.

    Returns:
        dict: The checkpoint's top-level dict.

    Raises:
        CheckpointError: The file is missing, unreadable, or needs arbitrary code to load.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f'checkpoint not found: {path}')
    if path.suffix.lower() == SAFETENSORS_SUFFIX:
        return read_safetensors(path)
    check_declared_sizes(path)
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as err:
        unsafe = re.search(r'GLOBAL (\S+)', str(err))
        if not unsafe:
            raise CheckpointError(f'{path} is not a readable PyTorch checkpoint (invalid pickle data)') from None
        raise CheckpointError(
            f'{path} was refused: loading it would run arbitrary code (it contains {unsafe.group(1)}). Only '
            'checkpoints of plain tensors are loaded; if you trust the file, re-save just its state dict') from None
    except Exception as err:  # torch raises RuntimeError, EOFError, KeyError... for non-checkpoint files
        reason = f'{type(err).__name__}: {str(err).splitlines()[0]}' if str(err) else type(err).__name__
        raise CheckpointError(f'{path} is not a readable PyTorch checkpoint ({reason})') from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f'{path} holds a {type(checkpoint).__name__}, not a state dict')
    return checkpoint


def check_declared_sizes(path: str | Path) -> None:
    """Refuse a zip checkpoint whose entries declare far more bytes than the file holds, before reading any.

    ``torch.load`` allocates each entry's declared size and would inflate a compressed one: a 1 KB file
    could take gigabytes. The sizes are read from the zip's central directory (nothing is decompressed).

    Raises:
        CheckpointError: The declared total exceeds twice the file's size plus :data:`ZIP_EXPANSION_MARGIN`.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            declared = sum(entry.file_size for entry in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return  # not a zip (a legacy checkpoint, or no checkpoint at all): torch.load explains
    size = path.stat().st_size
    if declared > 2 * size + ZIP_EXPANSION_MARGIN:
        raise CheckpointError(f'{path} was refused: its zip entries declare {declared:,} bytes in a {size:,}-byte '
                              'file (a decompression bomb?); a PyTorch checkpoint stores its tensors uncompressed')


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """The flat state dict of a ``.safetensors`` file (the format holds tensors only, nothing to execute).

    Raises:
        CheckpointError: The ``safetensors`` package is missing or the file is not a valid safetensors file.
    """
    try:
        from safetensors import SafetensorError
        from safetensors.torch import load_file
    except ImportError:
        raise CheckpointError(f'reading {path} needs the safetensors package: pip install "esc-arch[safetensors]"') \
            from None
    try:
        return load_file(str(path), device='cpu')
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f'{path} is not a readable safetensors file ({str(err).splitlines()[0]})') from None


def extract_state_dict(checkpoint: dict, param_key: str | None = None,
                       source: str = 'checkpoint') -> dict[str, torch.Tensor]:
    """Pick the network weights out of a checkpoint dict.

    Args:
        checkpoint (dict): A BasicSR checkpoint (``params_ema`` / ``params``), the arbitrary-scale
            authors' checkpoint (``{'model': {'name', 'args', 'sd'}}``) or a bare state dict.
        param_key (str | None): Key to prefer (BasicSR's ``param_key_g``); falls back to
            ``params_ema``, ``params``, then the bare dict, as BasicSR does. Default: None.
        source (str): Name used in error messages. Default: 'checkpoint'.

    Returns:
        dict[str, Tensor]: The state dict, without a ``module.`` prefix.
    """
    for key in (param_key, *STATE_DICT_KEYS):
        if key is not None and isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    else:
        authors_model = checkpoint.get('model')
        if isinstance(authors_model, dict) and isinstance(authors_model.get('sd'), dict):
            checkpoint = authors_model['sd']
    non_tensors = [key for key, value in checkpoint.items() if not isinstance(value, torch.Tensor)]
    if non_tensors or not checkpoint:
        raise CheckpointError(f'{source} holds no state dict: expected tensors (or a "params_ema"/"params" '
                              f'entry), found keys {_first(list(checkpoint))}')
    if all(key.startswith('module.') for key in checkpoint):
        checkpoint = {key[len('module.'):]: value for key, value in checkpoint.items()}
    check_finite(checkpoint, source)
    return dict(checkpoint)


def check_finite(state_dict: dict[str, torch.Tensor], source: str = 'checkpoint') -> None:
    """Refuse weights with NaN/inf values (e.g. saved from a diverged run): they give black or NaN images silently.

    Raises:
        CheckpointError: Naming the first tensor with a non-finite value.
    """
    for key, value in state_dict.items():
        if value.is_floating_point() or value.is_complex():
            finite = torch.isfinite(value)
            if not finite.all():
                raise CheckpointError(f'{source} holds non-finite weights: {key} has {int((~finite).sum())} NaN/inf '
                                      'value(s) (saved from a diverged training?); use an earlier checkpoint')


def load_state_dict(path: str | Path, param_key: str | None = None) -> dict[str, torch.Tensor]:
    """Read a checkpoint file safely and return its network state dict.

    Args:
        path (str | Path): The ``.pth`` file.
        param_key (str | None): Key to prefer, see :func:`extract_state_dict`. Default: None.

    Returns:
        dict[str, Tensor]: The state dict.
    """
    return extract_state_dict(read_checkpoint(path), param_key, source=str(path))


def infer_network_config(state_dict: dict[str, torch.Tensor]) -> dict:
    """Read an ESC network's type and options from its state dict's keys and shapes.

    The result has the form and keys of ``network.config`` (:mod:`esc_arch.archs.config`), so that
    ``infer_network_config(network.state_dict()) == network.config``. ``attn_type`` is a run-time
    choice and is not stored; nor is ESC-LTE's ``train_scale_max``, given the published value.

    Args:
        state_dict (dict[str, Tensor]): Weights of an ESC, ESCFP, ESCReal or ESCLTE network.

    Returns:
        dict: A ``network_g`` dict (``type`` plus constructor arguments).

    Raises:
        CheckpointError: The keys are not those of an ESC-family network.
    """
    if all(key in state_dict for key in _LTE_KEYS):
        return _lte_config(state_dict)
    if 'plk_filter' in state_dict:
        arch_type = 'ESCReal' if 'skip.0.weight' in state_dict else 'ESC'
    elif 'lk_channel' in state_dict and 'lk_spatial' in state_dict:
        arch_type = 'ESCFP'
    else:
        raise CheckpointError('the weights are not those of an ESC, ESC-FP, ESC-Real or ESC-LTE network '
                              f'(first keys: {_first(list(state_dict))})')
    config = {'type': arch_type, **_trunk_config(state_dict), 'upscaling_factor': infer_scale(state_dict, arch_type)}
    if arch_type == 'ESC':
        config['use_ln'] = 'blocks.0.lns.0.weight' in state_dict
    return config


def _trunk_config(state_dict: dict[str, torch.Tensor]) -> dict:
    """The trunk options (:class:`~esc_arch.archs.trunk.TrunkBase`) of a state dict without prefix."""
    try:
        kernel = state_dict['plk_filter'] if 'plk_filter' in state_dict else state_dict['lk_spatial']
        dim = state_dict['proj.weight'].shape[0]
        bias_table = state_dict['blocks.0.attn.relative_position_bias']
        return {
            'dim': dim,
            'pdim': kernel.shape[0],
            'kernel_size': kernel.shape[-1],
            'n_blocks': _count_indices(state_dict, 'blocks.'),
            'conv_blocks': _count_indices(state_dict, 'blocks.0.pconvs.'),
            'window_size': (math.isqrt(bias_table.shape[1]) + 1) // 2,  # table holds (2 ws - 1)^2 offsets
            'num_heads': bias_table.shape[0],
            'exp_ratio': _exp_ratio(state_dict['blocks.0.convffns.0.proj.weight'].shape[0], dim),
        }
    except KeyError as err:
        raise CheckpointError(f'the weights lack {err.args[0]!r}: not a complete ESC-family state dict') from None


def _lte_config(state_dict: dict[str, torch.Tensor]) -> dict:
    encoder = {key[len('encoder.'):]: value for key, value in state_dict.items() if key.startswith('encoder.')}
    mlp = sorted(int(key.split('.')[2]) for key in state_dict if key.startswith('imnet.layers.') and
                 key.endswith('.weight'))
    return {
        'type': 'ESCLTE',
        **_trunk_config(encoder),
        'use_ln': 'blocks.0.lns.0.weight' in encoder,
        'hidden_dim': state_dict['coef.weight'].shape[0],
        'mlp_hidden': [state_dict[f'imnet.layers.{index}.weight'].shape[0] for index in mlp[:-1]],
        'train_scale_max': PRESETS['ESC-LTE'].options['train_scale_max'],  # not stored in the weights
    }


def infer_scale(state_dict: dict[str, torch.Tensor], arch_type: str) -> int:
    """Scale (``upscaling_factor``) of a fixed-scale ESC state dict, from its ``to_img`` keys and shapes.

    ESC and ESCFP: ``to_img`` has ``3 * s * s`` outputs. ESCReal: its upsampler's layers differ by
    scale (see :func:`esc_arch.archs.heads.real_upsampler_scale`).

    Args:
        state_dict (dict[str, Tensor]): Network weights.
        arch_type (str): 'ESC', 'ESCFP' or 'ESCReal'.

    Returns:
        int: The scale.

    Raises:
        CheckpointError: ESCReal weights without a known upsampler, or weights without ``to_img``.
    """
    if arch_type == 'ESCReal':
        scale = real_upsampler_scale(state_dict)
        if scale is None:
            raise CheckpointError('the ESC-Real weights have no known upsampler (to_img.0.* at x2, to_img.8.* at x4)')
        return scale
    if PIXEL_SHUFFLE_HEAD[0] not in state_dict:
        raise CheckpointError(f'the weights lack {PIXEL_SHUFFLE_HEAD[0]!r}: not a complete ESC-family state dict')
    return math.isqrt(state_dict[PIXEL_SHUFFLE_HEAD[0]].shape[0] // 3)


def state_dict_scale(state_dict: dict[str, torch.Tensor]) -> int | None:
    """The scale an ESC-family state dict was trained for; None for arbitrary-scale (ESC-LTE) or other weights."""
    try:
        return infer_network_config(state_dict).get('upscaling_factor')
    except CheckpointError:
        return None


def adapt_state_dict(state_dict: dict[str, torch.Tensor], network: torch.nn.Module,
                     notify: Callable[[str], None] | None = None) -> dict[str, torch.Tensor]:
    """The state dict adapted to ``network`` before a strict load (as timm's ``checkpoint_filter_fn``).

    The one adaptation: a pixel-shuffle head ``to_img`` (ESC, ESC-FP) trained for another scale is
    resampled to the network's scale (the paper's x3/x4 training starts from the x2 weights; see
    :func:`esc_arch.archs.heads.resample_pixel_shuffle_head`). Anything else is returned unchanged, so
    that the strict load reports it.

    Args:
        state_dict (dict[str, Tensor]): The weights (not modified).
        network (nn.Module): The network they are for (wrappers are seen through).
        notify (Callable[[str], None] | None): Called with a one-line note when a head was resampled.

    Returns:
        dict[str, Tensor]: The adapted state dict (``state_dict`` itself where nothing changed).
    """
    bare = bare_network(network)
    if not isinstance(bare, PixelShuffleHeadMixin):
        return state_dict
    adapted, source_scale = resample_head_of(state_dict, bare.upscaling_factor)
    if source_scale is not None and notify is not None:
        notify(f'to_img resampled from x{source_scale} to x{bare.upscaling_factor}.')
    return adapted


def load_into_network(network: torch.nn.Module, state_dict: dict[str, torch.Tensor],
                      source: str = 'checkpoint') -> None:
    """Load a state dict strictly into a network, explaining a mismatch in one error.

    Args:
        network (nn.Module): The network to fill.
        state_dict (dict[str, Tensor]): Its weights.
        source (str): Name of the checkpoint, for messages. Default: 'checkpoint'.

    Raises:
        CheckpointError: Missing, unexpected or wrongly shaped weights; the message lists the first
            ones and, when both are ESC-family, how the checkpoint's configuration differs.
    """
    try:
        network.load_state_dict(state_dict, strict=True)
    except RuntimeError:
        raise CheckpointError(describe_mismatch(network.state_dict(), state_dict, source)) from None


def describe_mismatch(expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor],
                      source: str = 'checkpoint') -> str:
    """One-line explanation of why the state dict ``given`` does not fit a network whose own is ``expected``."""
    missing = [key for key in expected if key not in given]
    unexpected = [key for key in given if key not in expected]
    resized = [f'{key} {tuple(given[key].shape)} vs {tuple(value.shape)}' for key, value in expected.items()
               if key in given and given[key].shape != value.shape]
    parts = [f'{label} {_first(keys)}' for label, keys in
             (('missing', missing), ('unexpected', unexpected), ('shape checkpoint vs network:', resized)) if keys]
    return f'{source} does not fit the network: {"; ".join(parts)}. {_likely_cause(expected, given)}'


def _likely_cause(expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor]) -> str:
    try:
        wanted, found = infer_network_config(expected), infer_network_config(given)
    except CheckpointError:
        return 'Is it a checkpoint of an ESC-family network?'
    differences = [f'{key}={found[key]} (network: {wanted.get(key)})' for key in found if found[key] != wanted.get(key)]
    if not differences:
        return 'The checkpoint has the same configuration as the network but different weight names or shapes.'
    preset = matching_preset(found)
    scale = f' x{found["upscaling_factor"]}' if 'upscaling_factor' in found else ''
    advice = f'it is {preset}{scale}' if preset else 'use a network_g YAML with these values'
    return f'The checkpoint has {", ".join(differences)}: {advice}.'


def matching_preset(config: dict) -> str | None:
    """Name of the published variant (see ``PRESETS``) that ``config`` is, ignoring scale and backend; or None."""
    for name, preset in PRESETS.items():
        if all(config.get(key, False) == value for key, value in preset.options.items()) and \
                config.get('use_ln', False) == preset.options.get('use_ln', False):
            return name
    return None


def _count_indices(state_dict: dict[str, torch.Tensor], prefix: str) -> int:
    indices = {key[len(prefix):].split('.', 1)[0] for key in state_dict if key.startswith(prefix)}
    return len(indices)


def _exp_ratio(hidden: int, dim: int) -> float:
    """The ``exp_ratio`` whose ``int(dim * exp_ratio)`` gives ``hidden``, as short as possible."""
    for digits in range(1, 7):
        ratio = round(hidden / dim, digits)
        if int(dim * ratio) == hidden:
            return ratio
    return hidden / dim


def _first(keys: list[str]) -> str:
    shown = ', '.join(keys[:_SHOWN_KEYS])
    return f'{shown} (+{len(keys) - _SHOWN_KEYS} more)' if len(keys) > _SHOWN_KEYS else shown
