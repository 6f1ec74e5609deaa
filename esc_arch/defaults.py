"""Values that the library uses and the command line shows in ``--help``, in a module that imports nothing.

The ``basicsr`` commands build their parsers from these without importing torch, so that ``--help``
starts at once; the modules named below use them and re-export them under their usual names.
"""
__all__ = ['CHECK_TOLERANCES', 'DEFAULT_OUTPUT_SIZE', 'ONNX_OPSET', 'ONNX_PRECISIONS', 'SAFETENSORS_SUFFIX',
           'STATE_DICT_KEYS', 'WEIGHT_DTYPES']

# esc_arch.checkpoint
STATE_DICT_KEYS = ('params_ema', 'params')
SAFETENSORS_SUFFIX = '.safetensors'
# esc_arch.conversion: the types weights may be stored as (torch's names)
WEIGHT_DTYPES = ('float32', 'float16', 'bfloat16')
# esc_arch.export
ONNX_OPSET = 17
ONNX_PRECISIONS = ('fp32', 'fp16')
CHECK_TOLERANCES = {'fp32': 1e-4, 'fp16': 2e-2}
# esc_arch.profiling: the paper's output size (width, height)
DEFAULT_OUTPUT_SIZE = (1280, 720)
