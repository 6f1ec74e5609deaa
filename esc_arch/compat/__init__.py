"""Fixes that let PyPI's basicsr 1.4.2 run on current torch/torchvision.

Imported first by :mod:`esc_arch`, before anything imports basicsr. Each fix checks
whether it is needed and does nothing otherwise.
"""
from .torchvision_fixes import apply as _apply_torchvision_fixes

_apply_torchvision_fixes()
