"""ESC (Emulating Self-attention with Convolution) networks and tools for BasicSR.

Importing this package registers the ESC networks, datasets and models in BasicSR's registries, and
applies only the fixes that importing basicsr needs (the ``import`` rows of :mod:`esc_arch.compat.table`). The
fixes of BasicSR's training and testing are applied by the ``basicsr`` command, or in your own
scripts by :func:`esc_arch.compat.apply_all`. The layers are described in docs/ARCHITECTURE.md.
"""
from . import compat  # noqa: F401  (must run before anything imports basicsr)
from .archs import (ATTN_TYPES, ESC, ESCFP, ESCLTE, PRESETS, Bicubic, Block, ConvAttn, ConvAttnBranch, ConvFFN,
                    DecomposedConvAttn, ESCReal, ESCTrunk, LayerNorm2d, WindowAttention, build_preset, preset_config,
                    set_export_mode)
from . import data, models  # noqa: F401,E402  (registers the datasets and model classes)

__all__ = [
    'ATTN_TYPES', 'Bicubic', 'Block', 'ConvAttn', 'ConvAttnBranch', 'ConvFFN', 'DecomposedConvAttn', 'ESC', 'ESCFP',
    'ESCLTE', 'ESCReal', 'ESCTrunk', 'LayerNorm2d', 'PRESETS', 'WindowAttention', 'build_preset', 'preset_config',
    'set_export_mode'
]
