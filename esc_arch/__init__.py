"""ESC (Emulating Self-attention with Convolution) networks and tools for BasicSR.

Importing this package registers the ESC networks, datasets and models in BasicSR's registries, and
applies only the fixes that importing basicsr needs (the ``import`` rows of :mod:`esc_arch.compat.table`). The
fixes of BasicSR's training and testing are applied by the ``basicsr`` command, or in your own
scripts by :func:`esc_arch.compat.apply_all`. The layers are described in docs/ARCHITECTURE.md.
"""
# compat comes first: it must run before anything imports basicsr; data, metrics and models register the
# datasets, metrics and model classes.
from . import compat, data, metrics, models  # noqa: F401
from .archs import (
    ATTN_TYPES,
    ESC,
    ESCFP,
    ESCLTE,
    PRESETS,
    Bicubic,
    Block,
    ConvAttn,
    ConvAttnBranch,
    ConvFFN,
    DecomposedConvAttn,
    ESCReal,
    ESCTrunk,
    LayerNorm2d,
    WindowAttention,
    build_network,
    build_preset,
    preset_config,
    set_export_mode,
)

__all__ = [
    'ATTN_TYPES', 'Bicubic', 'Block', 'ConvAttn', 'ConvAttnBranch', 'ConvFFN', 'DecomposedConvAttn', 'ESC', 'ESCFP',
    'ESCLTE', 'ESCReal', 'ESCTrunk', 'LayerNorm2d', 'PRESETS', 'WindowAttention', 'build_network', 'build_preset',
    'preset_config', 'set_export_mode'
]
