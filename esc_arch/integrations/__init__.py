"""Adapters that let other tools load ESC checkpoints (each needs its optional extra installed)."""
