"""ESC (Emulating Self-attention with Convolution) networks and tools for BasicSR.

Importing this package registers the ESC networks in BasicSR's registries.
"""
from . import compat  # noqa: F401  (must run before anything imports basicsr)
from .archs import (ATTN_TYPES, ESC, ESCFP, PRESETS, Block, ConvAttn, ConvAttnBranch, ConvFFN, DecomposedConvAttn,
                    ESCReal, LayerNorm2d, WindowAttention, build_preset, preset_config)
from . import data, models  # noqa: F401,E402  (registers the datasets and model classes)

__all__ = [
    'ATTN_TYPES', 'Block', 'ConvAttn', 'ConvAttnBranch', 'ConvFFN', 'DecomposedConvAttn', 'ESC', 'ESCFP', 'ESCReal',
    'LayerNorm2d', 'PRESETS', 'WindowAttention', 'build_preset', 'preset_config'
]
