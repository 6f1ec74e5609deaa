"""ESC (Emulating Self-attention with Convolution) networks and tools for BasicSR."""
from . import compat  # noqa: F401  (must run before anything imports basicsr)
