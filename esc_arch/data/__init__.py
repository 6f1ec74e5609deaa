"""Datasets (registered in BasicSR's DATASET_REGISTRY on import) and MATLAB-style bicubic resizing."""
from .arbitrary_scale_dataset import ArbitraryScaleDataset
from .downsample_dataset import DownsampleImageDataset, pil_bicubic_downsample
from .hr_only_dataset import HROnlyBicubicDataset
from .matlab_resize import bicubic_downsample, matlab_imresize
from .paired_image_dataset import CheckedPairedImageDataset
from .real_world_dataset import RealESRGANDataset

__all__ = [
    'ArbitraryScaleDataset', 'CheckedPairedImageDataset', 'DownsampleImageDataset', 'HROnlyBicubicDataset',
    'RealESRGANDataset', 'bicubic_downsample', 'matlab_imresize', 'pil_bicubic_downsample'
]
