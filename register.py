"""Importing this module registers everything ESC adds to BasicSR's registries and applies every BasicSR fix.

For code run from this repository next to BasicSR's own scripts (``import register`` in ``train.py``):
it does what the ``basicsr`` command does: ``esc_arch.compat.apply_all()`` applies the fixes of training
and testing (listed in esc_arch/compat/table.py), importing basicsr, which registers ESC's classes
(``import esc_arch`` alone registers them when basicsr is imported: esc_arch/registration.py).
Importing it again, or importing ``esc_arch`` too, is harmless: each registration and each fix happens
once per process.
"""
import esc_arch.compat

esc_arch.compat.apply_all()
