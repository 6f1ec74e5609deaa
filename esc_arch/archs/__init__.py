"""ESC networks (registered in BasicSR's ARCH_REGISTRY on import), their building blocks, presets and factory."""
from .attention import ATTN_TYPES, WindowAttention
from .bicubic import Bicubic
from .blocks import Block, ConvAttn, ConvAttnBranch, ConvFFN, DecomposedConvAttn, LayerNorm2d, SharedKernel
from .esc import ESC
from .esc_fp import ESCFP
from .esc_lte import ESCLTE
from .esc_real import ESCReal
from .factory import build_network, build_preset, create_network, network_options, read_network_options
from .introspection import bare_network, network_scale, network_window
from .layers import ExportPath, set_export_mode
from .presets import PRESETS, Preset, preset_config
from .trunk import ESCTrunk, TrunkBase

__all__ = [
    'ATTN_TYPES', 'Bicubic', 'Block', 'ConvAttn', 'ConvAttnBranch', 'ConvFFN', 'DecomposedConvAttn', 'ESC', 'ESCFP',
    'ESCLTE', 'ESCReal', 'ESCTrunk', 'ExportPath', 'LayerNorm2d', 'PRESETS', 'Preset', 'SharedKernel', 'TrunkBase',
    'WindowAttention', 'bare_network', 'build_network', 'build_preset', 'create_network', 'network_options',
    'network_scale', 'network_window', 'preset_config', 'read_network_options', 'set_export_mode'
]
