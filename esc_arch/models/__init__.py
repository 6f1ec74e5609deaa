"""BasicSR model classes for ESC (registered in BasicSR's MODEL_REGISTRY on import)."""
from .esc_model import ESCModel, ESRModel, NonFiniteLossError

__all__ = ['ESCModel', 'ESRModel', 'NonFiniteLossError']
