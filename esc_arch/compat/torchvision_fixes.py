"""Make ``import torchvision`` and basicsr's torchvision imports work.

Two problems are handled:

* A CUDA build of torchvision next to a CPU build of torch cannot load its compiled
  ops, and its meta registrations then fail with ``operator torchvision::nms does not
  exist``. Declaring the missing op schemas lets the pure-Python parts import; calling
  those ops still fails, which basicsr never does.
* ``torchvision.transforms.functional_tensor`` was removed (torchvision 0.17), but
  basicsr's ``data/degradations.py`` imports ``rgb_to_grayscale`` from it.

The first replaces nothing (it declares op schemas torchvision lacks), so it is a function,
:func:`import_torchvision`; the second is the patch ``torchvision-functional-tensor`` of
:mod:`esc_arch.compat.table`, built by :func:`functional_tensor_alias`.
"""
import importlib
import sys
import types

import torch

from esc_arch.patching import MISSING

__all__ = ['FUNCTIONAL_TENSOR', 'functional_tensor_alias', 'functional_tensor_is_missing', 'import_torchvision']

# Schemas of the compiled ops that torchvision's Python code registers fake kernels for.
_MISSING_OP_SCHEMAS = {
    'nms': 'nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor',
    'qnms': 'qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor',
}
# Kept alive for the whole process: dropping the Library object unregisters its ops.
_op_library = None
FUNCTIONAL_TENSOR = 'torchvision.transforms.functional_tensor'


def _forget_torchvision():
    for name in [m for m in sys.modules if m == 'torchvision' or m.startswith('torchvision.')]:
        del sys.modules[name]


def _declare_missing_ops():
    global _op_library
    _op_library = torch.library.Library('torchvision', 'FRAGMENT')
    for name, schema in _MISSING_OP_SCHEMAS.items():
        if not _op_exists(name):
            _op_library.define(schema)


def _op_exists(name: str) -> bool:
    try:
        getattr(torch.ops.torchvision, name)
    except (AttributeError, RuntimeError):
        return False
    return True


def import_torchvision() -> types.ModuleType:
    """Import torchvision, declaring its compiled ops first if they cannot be loaded."""
    try:
        import torchvision
    except RuntimeError as error:
        if 'torchvision::' not in str(error):
            raise
        _forget_torchvision()
        _declare_missing_ops()
        import torchvision
    return torchvision


def functional_tensor_is_missing(original: object) -> bool:
    """Whether this torchvision lacks ``transforms.functional_tensor`` (removed in 0.17)."""
    if original is not MISSING:
        return False
    try:
        importlib.import_module(FUNCTIONAL_TENSOR)
    except ImportError:
        return True
    return False


def functional_tensor_alias(original: object) -> types.ModuleType:
    """A module ``functional_tensor`` with the one function basicsr imports from it."""
    from torchvision.transforms import functional

    module = types.ModuleType(FUNCTIONAL_TENSOR)
    module.rgb_to_grayscale = functional.rgb_to_grayscale
    module.__doc__ = 'Alias created by esc_arch for basicsr 1.4.2 (removed in torchvision 0.17).'
    return module

