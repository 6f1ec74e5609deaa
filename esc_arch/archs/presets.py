"""The published ESC variants, by name (case-insensitive): one registry, ESC-LTE included."""
import copy
from dataclasses import dataclass, field

from esc_arch.errors import OptionsError

from .heads import REAL_UPSAMPLER_SCALES

__all__ = ['DEFAULT_SCALE', 'PRESETS', 'Preset', 'preset_config', 'preset_name']

DEFAULT_SCALE = 4
"""The scale a fixed-scale preset is built at when none is given."""


@dataclass(frozen=True)
class Preset:
    """A published variant.

    Attributes:
        name (str): Its name, e.g. ``ESC-light``.
        options (dict): Its ``network_g`` options (``type`` first) without the scale.
        scales (tuple[int, ...] | None): The scales it is offered at; None for an arbitrary-scale network
            (the scale is a request at run time, not an option).
    """
    name: str
    options: dict = field(hash=False)
    scales: tuple[int, ...] | None = (2, 3, 4)

    def config(self, scale: float | None = None, **overrides: object) -> dict:
        """The ``network_g`` options at ``scale`` (default x4; none for an arbitrary-scale network), overrides applied.

        Raises:
            OptionsError: A fixed-scale variant at a scale it is not offered at, or a scale that is not positive.
        """
        if self.scales is None:
            if scale is not None and not (isinstance(scale, (int, float)) and scale > 0):
                raise OptionsError(f'{self.name} upscales by any positive factor; got {scale!r}')
            return copy.deepcopy({**self.options, **overrides})
        scale = DEFAULT_SCALE if scale is None else scale
        if scale not in self.scales:
            offered = ', '.join(f'x{offered}' for offered in self.scales)
            raise OptionsError(f'{self.name} is offered at scales {offered}, not x{scale}')
        return copy.deepcopy({**self.options, 'upscaling_factor': scale, **overrides})


_COMMON = dict(kernel_size=13, conv_blocks=5, exp_ratio=1.25)

PRESETS = {preset.name: preset for preset in (
    Preset('ESC', dict(type='ESC', dim=64, pdim=16, n_blocks=5, window_size=32, num_heads=4, **_COMMON)),
    Preset('ESC-light', dict(type='ESC', dim=64, pdim=16, n_blocks=3, window_size=32, num_heads=4, **_COMMON)),
    Preset('ESC-FP', dict(type='ESCFP', dim=48, pdim=16, n_blocks=5, window_size=32, num_heads=3, **_COMMON)),
    Preset('ESC-XL', dict(type='ESC', dim=192, pdim=48, n_blocks=8, window_size=48, num_heads=12, use_ln=True,
                          **_COMMON)),
    # the authors' ESC-Real weights are x4; x2 has an upsampler of its own (archs/heads.py)
    Preset('ESC-Real', dict(type='ESCReal', dim=64, pdim=16, n_blocks=10, window_size=32, num_heads=4,
                            **{**_COMMON, 'exp_ratio': 2.0}), scales=REAL_UPSAMPLER_SCALES),
    Preset('ESC-LTE', dict(type='ESCLTE', dim=64, pdim=16, kernel_size=13, n_blocks=5, conv_blocks=5, window_size=32,
                           num_heads=4, exp_ratio=1.25, hidden_dim=256, mlp_hidden=[256, 256, 256],
                           train_scale_max=4.0), scales=None),
)}
"""The published variants by canonical name (see :class:`Preset`)."""


def preset_name(name: str) -> str:
    """The canonical spelling of a preset name given in any case.

    Raises:
        OptionsError: No preset has this name.
    """
    for canonical in PRESETS:
        if canonical.lower() == str(name).lower():
            return canonical
    raise OptionsError(f'unknown ESC preset {name!r}; choose one of {", ".join(PRESETS)}')


def preset_config(name: str, scale: float | None = None, **overrides: object) -> dict:
    """The ``network_g`` options of a published variant at ``scale`` (see :meth:`Preset.config`).

    e.g. ``preset_config('ESC', scale=2)``; ``preset_config('ESC-LTE')`` has no scale option.
    """
    return PRESETS[preset_name(name)].config(scale, **overrides)
