"""The ESC authors' ``DownsampleImageDataset``: HR images only, LR made on the fly by PIL's bicubic (paper, Table 4)."""
import random

import numpy as np
import torch

from esc_arch.errors import DatasetError

from basicsr.data.transforms import augment, mod_crop
from basicsr.utils import img2tensor
from basicsr.utils.registry import DATASET_REGISTRY

from .hr_images import HRImageDataset, pil_bicubic_resize

__all__ = ['DownsampleImageDataset', 'pil_bicubic_downsample']


def pil_bicubic_downsample(image: torch.Tensor, scale: int) -> torch.Tensor:
    """torchvision's ``ToTensor(Resize((h // scale, w // scale), BICUBIC)(ToPILImage()(image)))``, without torchvision.

    This is the LR of the authors' DFLIP training: the float RGB image is multiplied by 255 and
    *truncated* to uint8 (``ToPILImage``), resized by PIL's antialiased bicubic filter, and divided
    by 255 again. It is not MATLAB's bicubic (``basicsr make-lr``, :class:`HROnlyBicubicDataset`).

    Args:
        image (Tensor): ``(3, H, W)`` RGB float image in [0, 1].
        scale (int): Downsampling factor.

    Returns:
        Tensor: ``(3, H // scale, W // scale)`` float32 image, multiples of 1/255.
    """
    height, width = image.shape[-2:]
    return pil_bicubic_resize(image, (height // scale, width // scale))


@DATASET_REGISTRY.register()
class DownsampleImageDataset(HRImageDataset):
    """HR images only; the LR of each training crop is made on the fly as the ESC authors did for DFLIP.

    In the train phase: read the HR image (BasicSR's BGR float32 in [0, 1]), take one random
    ``gt_size`` square, flip/rotate it (BasicSR's ``augment``), convert it to an RGB tensor, and
    make the LR with :func:`pil_bicubic_downsample` (torchvision's ``ToPILImage``, PIL bicubic
    ``Resize``, ``ToTensor``). The GT stays the float crop. In a val/test phase the whole image,
    cropped to a multiple of ``scale``, is used instead of a crop, without augmentation.

    Args:
        opt (dict): Config for datasets: ``dataroot_gt``, ``io_backend`` and ``meta_info_file`` (the HR
            images, see :class:`~esc_arch.data.hr_images.HRImageDataset`), and the following keys:
            filename_tmpl (str, optional): Accepted for the authors' options files; unused (no LR files).
            gt_size (int): HR crop size in the train phase.
            use_hflip (bool): Random horizontal flips (train). Default: False.
            use_rot (bool): Random 90-degree rotations and vertical flips (train). Default: False.
            mean (list[float], optional): Subtracted from LR and GT after conversion. Default: none.
            std (list[float], optional): Divided into LR and GT after conversion. Default: none.
            scale (int): Scale factor, added by BasicSR from the top-level ``scale``.
            phase (str): ``train``, ``val`` or ``test``, added by BasicSR.
    """

    def __init__(self, opt: dict) -> None:
        super().__init__(opt)
        self.scale = opt['scale']
        self.mean, self.std = opt.get('mean'), opt.get('std')
        if opt['phase'] == 'train' and not (isinstance(opt.get('gt_size'), int) and opt['gt_size'] >= self.scale):
            raise DatasetError(f"gt_size of dataset '{self.name}' must be an integer of at least scale {self.scale}; "
                               f"got {opt.get('gt_size')!r}")

    def __getitem__(self, index: int) -> dict:
        path = self.paths[index]
        img_gt = self.read_hr(path).astype(np.float32) / 255.  # as imfrombytes(float32=True), which the authors use

        if self.opt['phase'] == 'train':
            gt_size = self.opt['gt_size']
            height, width = img_gt.shape[:2]
            if height < gt_size or width < gt_size:
                raise DatasetError(f"dataset '{self.name}': {path} is {width}x{height} pixels, smaller than the "
                                   f'{gt_size}x{gt_size} training crop (gt_size)')
            top, left = random.randint(0, height - gt_size), random.randint(0, width - gt_size)
            img_gt = img_gt[top:top + gt_size, left:left + gt_size]
            img_gt = augment(img_gt, self.opt.get('use_hflip', False), self.opt.get('use_rot', False))
        else:
            img_gt = mod_crop(img_gt, self.scale)
        img_gt = img2tensor(img_gt, bgr2rgb=True, float32=True)
        img_lq = pil_bicubic_downsample(img_gt, self.scale)
        if self.mean is not None or self.std is not None:
            img_lq, img_gt = self._normalize(img_lq), self._normalize(img_gt)
        return {'lq': img_lq, 'gt': img_gt, 'lq_path': path, 'gt_path': path}

    def _normalize(self, image: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean if self.mean is not None else [0.0] * 3).view(-1, 1, 1)
        std = torch.tensor(self.std if self.std is not None else [1.0] * 3).view(-1, 1, 1)
        return (image - mean) / std
