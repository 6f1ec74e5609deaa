"""Importing this module registers everything ESC adds to BasicSR's registries.

For code run from this repository (``import register`` next to BasicSR's own scripts); an
installed package does the same with ``import esc_arch``. Importing it again, or importing
both, is harmless: Python runs ``esc_arch`` once per process.
"""
import esc_arch  # noqa: F401
