"""Training (or validation) from HR images alone: the LR is made on the fly, MATLAB-bicubic."""
import random

import numpy as np

from esc_arch.errors import DatasetError

from basicsr.data.transforms import augment, mod_crop
from basicsr.utils import img2tensor
from basicsr.utils.registry import DATASET_REGISTRY

from .hr_images import HRImageDataset
from .matlab_resize import bicubic_downsample

# LR pixels of context around a crop: the antialiased bicubic kernel reaches 2 LR pixels
# (2*scale HR pixels) out, so with this margin a crop's LR equals that crop of the whole image's LR.
_CONTEXT = 2


@DATASET_REGISTRY.register()
class HROnlyBicubicDataset(HRImageDataset):
    """HR images only; each LR is the MATLAB-bicubic downsampling of its HR, as ``basicsr make-lr`` makes it.

    Not the paper's DFLIP setting, whose LR is PIL's bicubic: that is :class:`DownsampleImageDataset`.

    The LR equals what ``basicsr make-lr`` (MATLAB ``imresize(modcrop(HR, s), 1/s, 'bicubic')`` on
    uint8) would have stored, so training from HR folders matches training from prepared LR files.
    In the train phase a random HR crop is taken (the LR is computed with enough context around it
    to be exact), then flipped/rotated; in the val/test phase the whole modcropped image is used.

    Args:
        opt (dict): Config for datasets: ``dataroot_gt``, ``io_backend`` and ``meta_info_file`` (the HR
            images, see :class:`~esc_arch.data.hr_images.HRImageDataset`), and the following keys:
            gt_size (int): HR patch size in the train phase (a multiple of ``scale``).
            use_hflip (bool): Random horizontal flips (train). Default: True.
            use_rot (bool): Random 90-degree rotations and vertical flips (train). Default: True.
            scale (int): Scale factor, added by BasicSR from the top-level ``scale``.
            phase (str): ``train``, ``val`` or ``test``, added by BasicSR.
    """

    def __init__(self, opt: dict) -> None:
        super().__init__(opt)
        self.scale = opt['scale']
        if opt['phase'] == 'train' and opt['gt_size'] % self.scale:
            raise DatasetError(f"gt_size {opt['gt_size']} of dataset '{self.name}' "
                               f'is not a multiple of scale {self.scale}')

    def __getitem__(self, index: int) -> dict:
        path = self.paths[index]
        img = self.read_hr(path)
        if self.opt['phase'] == 'train':
            img_gt, img_lq = self._random_crop(img, path)
            img_gt, img_lq = augment([img_gt, img_lq], self.opt.get('use_hflip', True), self.opt.get('use_rot', True))
        else:
            img = mod_crop(img, self.scale)
            img_gt, img_lq = img.astype(np.float32) / 255., bicubic_downsample(img, self.scale)

        img_gt, img_lq = img2tensor([img_gt, img_lq], bgr2rgb=True, float32=True)
        return {'lq': img_lq, 'gt': img_gt, 'lq_path': path, 'gt_path': path}

    def _random_crop(self, img: np.ndarray, path: str) -> tuple[np.ndarray, np.ndarray]:
        """A random HR crop (aligned to the LR grid) and its LR, as float32 HWC images."""
        scale = self.scale
        lr_patch = self.opt['gt_size'] // scale
        lr_height, lr_width = img.shape[0] // scale, img.shape[1] // scale
        if lr_height < lr_patch or lr_width < lr_patch:
            raise DatasetError(f'{path}: image of {img.shape[1]}x{img.shape[0]} pixels is smaller than the '
                             f"{self.opt['gt_size']}x{self.opt['gt_size']} training crop (gt_size)")
        top = random.randint(0, lr_height - lr_patch)
        left = random.randint(0, lr_width - lr_patch)
        context_top, context_left = max(top - _CONTEXT, 0), max(left - _CONTEXT, 0)
        context_bottom = min(top + lr_patch + _CONTEXT, lr_height)
        context_right = min(left + lr_patch + _CONTEXT, lr_width)
        region = img[context_top * scale:context_bottom * scale, context_left * scale:context_right * scale]
        lq_top, lq_left = top - context_top, left - context_left
        img_lq = bicubic_downsample(region, scale)[lq_top:lq_top + lr_patch, lq_left:lq_left + lr_patch]
        img_gt = img[top * scale:(top + lr_patch) * scale, left * scale:(left + lr_patch) * scale]
        return img_gt.astype(np.float32) / 255., img_lq
