"""BasicSR model classes for ESC (registered in BasicSR's MODEL_REGISTRY on import)."""
from .arbitrary_scale_model import ArbitraryScaleModel
from .esc_model import ESCModel, ESRModel
from .real_world import ESCRealGANModel, ESCRealNetModel, RealHATGANModel, RealHATMSEModel

__all__ = ['ArbitraryScaleModel', 'ESCModel', 'ESRModel', 'ESCRealGANModel', 'ESCRealNetModel', 'RealHATGANModel',
           'RealHATMSEModel']
