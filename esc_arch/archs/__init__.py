"""ESC networks (registered in BasicSR's ARCH_REGISTRY on import) and their building blocks."""
from .attention import ATTN_TYPES, WindowAttention
from .bicubic import Bicubic
from .blocks import Block, ConvAttn, ConvAttnBranch, ConvFFN, DecomposedConvAttn, LayerNorm2d, SharedKernel
from .esc import ESC
from .esc_fp import ESCFP
from .esc_lte import ESCLTE
from .esc_real import ESCReal
from .layers import ExportPath, set_export_mode
from .presets import PRESETS, SCALES, build_preset, preset_config
from .trunk import ESCTrunk, TrunkBase

__all__ = [
    'ATTN_TYPES', 'Bicubic', 'Block', 'ConvAttn', 'ConvAttnBranch', 'ConvFFN', 'DecomposedConvAttn', 'ESC', 'ESCFP',
    'ESCLTE', 'ESCReal', 'ESCTrunk', 'ExportPath', 'LayerNorm2d', 'PRESETS', 'SCALES', 'SharedKernel', 'TrunkBase',
    'WindowAttention', 'build_preset', 'preset_config', 'set_export_mode'
]
