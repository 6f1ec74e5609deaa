"""ESC networks (registered in BasicSR's ARCH_REGISTRY on import) and their building blocks."""
from .attention import ATTN_TYPES, WindowAttention
from .bicubic import Bicubic
from .blocks import Block, ConvAttn, ConvAttnBranch, ConvFFN, DecomposedConvAttn, LayerNorm2d
from .esc import ESC
from .esc_fp import ESCFP
from .esc_real import ESCReal
from .presets import PRESETS, build_preset, preset_config

__all__ = [
    'ATTN_TYPES', 'Bicubic', 'Block', 'ConvAttn', 'ConvAttnBranch', 'ConvFFN', 'DecomposedConvAttn', 'ESC', 'ESCFP',
    'ESCReal', 'LayerNorm2d', 'PRESETS', 'WindowAttention', 'build_preset', 'preset_config'
]
