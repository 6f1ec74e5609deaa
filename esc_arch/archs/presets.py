"""The published ESC variants, by name (case-insensitive)."""
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from .heads import REAL_UPSAMPLER_SCALES

_COMMON = dict(kernel_size=13, conv_blocks=5, exp_ratio=1.25)

PRESETS = {
    'ESC': dict(type='ESC', dim=64, pdim=16, n_blocks=5, window_size=32, num_heads=4, **_COMMON),
    'ESC-light': dict(type='ESC', dim=64, pdim=16, n_blocks=3, window_size=32, num_heads=4, **_COMMON),
    'ESC-FP': dict(type='ESCFP', dim=48, pdim=16, n_blocks=5, window_size=32, num_heads=3, **_COMMON),
    'ESC-XL': dict(type='ESC', dim=192, pdim=48, n_blocks=8, window_size=48, num_heads=12, use_ln=True, **_COMMON),
    'ESC-Real': dict(type='ESCReal', dim=64, pdim=16, n_blocks=10, window_size=32, num_heads=4,
                     **{**_COMMON, 'exp_ratio': 2.0}),
}
"""Hyperparameters of each published variant, without the scale (a ``network_g`` section less ``upscaling_factor``)."""

SCALES = {'ESC-Real': REAL_UPSAMPLER_SCALES}
"""Scales each variant is offered at, where not x2, x3 and x4 (the authors' ESC-Real weights are x4)."""


def preset_name(name: str) -> str:
    """The canonical spelling of a preset name given in any case; ValueError if unknown."""
    for canonical in PRESETS:
        if canonical.lower() == str(name).lower():
            return canonical
    raise ValueError(f'unknown ESC preset {name!r}; choose one of {", ".join(PRESETS)}')


def preset_config(name: str, scale: int = 4, **overrides: object) -> dict:
    """The ``network_g`` options of a published variant at ``scale`` (overrides replace keys)."""
    canonical = preset_name(name)
    if scale not in SCALES.get(canonical, (2, 3, 4)):
        raise ValueError(f'{canonical} is offered at scales {SCALES[canonical]}, not {scale}')
    return {**PRESETS[canonical], 'upscaling_factor': scale, **overrides}


def build_preset(name: str, scale: int = 4, **overrides: object) -> nn.Module:
    """Build a published variant, e.g. ``build_preset('ESC-light', scale=2, attn_type='sdpa')``."""
    options = preset_config(name, scale, **overrides)
    return ARCH_REGISTRY.get(options.pop('type'))(**options)
