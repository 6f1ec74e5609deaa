"""ESC (Emulating Self-attention with Convolution) networks and tools for BasicSR.

``import esc_arch`` is light: it imports neither torch nor basicsr. It makes sure that ESC's networks,
datasets, models and metric are in BasicSR's registries as soon as basicsr is imported (at once if it
is already), and that the fixes importing basicsr needs (the ``import`` rows of
:mod:`esc_arch.compat.table`) are applied before basicsr's own code runs: :mod:`esc_arch.registration`
describes how. So in your own BasicSR ``train.py``::

    import esc_arch  # noqa: F401
    from basicsr.train import train_pipeline

lets BasicSR build ``type: ESC``. The public names below (``esc_arch.ESC``, ``from esc_arch import
build_network``, ...) are imported on first use, from :mod:`esc_arch.archs`. The fixes of BasicSR's
training and testing are applied by the ``basicsr`` command, or in your own scripts by
:func:`esc_arch.compat.apply_all`. The layers are described in docs/ARCHITECTURE.md.
"""
import importlib
import sys
import types

from . import registration

__all__ = [
    'ATTN_TYPES', 'Bicubic', 'Block', 'ConvAttn', 'ConvAttnBranch', 'ConvFFN', 'DecomposedConvAttn', 'ESC', 'ESCFP',
    'ESCLTE', 'ESCReal', 'ESCTrunk', 'LayerNorm2d', 'PRESETS', 'WindowAttention', 'build_network', 'build_preset',
    'preset_config', 'set_export_mode'
]
_SUBPACKAGES = ('archs', 'compat', 'data', 'metrics', 'models')  # attributes ``import esc_arch`` used to set


def __getattr__(name: str) -> object:
    """The public names of :mod:`esc_arch.archs` and the subpackages, imported on first use (PEP 562)."""
    if name not in __all__ and name not in _SUBPACKAGES:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    # basicsr first, from here where no module of esc_arch is half-imported: its import registers everything
    importlib.import_module('basicsr')
    registration.register()
    if name in _SUBPACKAGES:
        return importlib.import_module(f'{__name__}.{name}')
    return getattr(importlib.import_module(f'{__name__}.archs'), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_SUBPACKAGES})


class _Package(types.ModuleType):
    """This package's module type: importlib sets each subpackage as an attribute once it is fully imported,
    the moment when a registration that waited for esc_arch's half-imported modules can run."""

    def __setattr__(self, name: str, value: object) -> None:
        super().__setattr__(name, value)
        if registration.is_waiting():
            registration.register()


sys.modules[__name__].__class__ = _Package
registration.install()
