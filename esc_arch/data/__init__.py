"""Datasets (registered in BasicSR's DATASET_REGISTRY on import) and MATLAB-style bicubic resizing."""
from .hr_only_dataset import HROnlyBicubicDataset
from .matlab_resize import bicubic_downsample, matlab_imresize

__all__ = ['HROnlyBicubicDataset', 'bicubic_downsample', 'matlab_imresize']
