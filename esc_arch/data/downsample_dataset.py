"""The ESC authors' ``DownsampleImageDataset``: HR images only, LR made on the fly by PIL's bicubic (paper, Table 4)."""
import random
from os import path as osp

import numpy as np
import torch
from PIL import Image
from torch.utils import data
from basicsr.data.data_util import paths_from_folder, paths_from_lmdb
from basicsr.data.transforms import augment, mod_crop
from basicsr.utils import FileClient, imfrombytes, img2tensor
from basicsr.utils.registry import DATASET_REGISTRY

from esc_arch.errors import DatasetError
from esc_arch.images import DEFAULT_MAX_PIXELS, read_header

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
    pixels = image.mul(255).byte().permute(1, 2, 0).numpy()
    resized = Image.fromarray(pixels).resize((width // scale, height // scale), Image.BICUBIC)
    return torch.from_numpy(np.array(resized, dtype=np.uint8)).permute(2, 0, 1).float().div(255)


@DATASET_REGISTRY.register()
class DownsampleImageDataset(data.Dataset):
    """HR images only; the LR of each training crop is made on the fly as the ESC authors did for DFLIP.

    In the train phase: read the HR image (BasicSR's BGR float32 in [0, 1]), take one random
    ``gt_size`` square, flip/rotate it (BasicSR's ``augment``), convert it to an RGB tensor, and
    make the LR with :func:`pil_bicubic_downsample` (torchvision's ``ToPILImage``, PIL bicubic
    ``Resize``, ``ToTensor``). The GT stays the float crop. In a val/test phase the whole image,
    cropped to a multiple of ``scale``, is used instead of a crop, without augmentation.

    Args:
        opt (dict): Config for datasets. It contains the following keys:
            dataroot_gt (str): Folder of HR images, or an LMDB (``*.lmdb``, read through its
                ``meta_info.txt``) with ``io_backend.type: lmdb``.
            io_backend (dict): ``{type: disk}`` or ``{type: lmdb}``.
            meta_info_file (str, optional): With a folder, the images to use: one file name per line
                (relative to ``dataroot_gt``; anything after a space is ignored). Default: every image.
            filename_tmpl (str, optional): Accepted for the authors' options files; unused (no LR files).
            gt_size (int): HR crop size in the train phase.
            use_hflip (bool): Random horizontal flips (train). Default: False.
            use_rot (bool): Random 90-degree rotations and vertical flips (train). Default: False.
            mean (list[float], optional): Subtracted from LR and GT after conversion. Default: none.
            std (list[float], optional): Divided into LR and GT after conversion. Default: none.
            scale (int): Scale factor, added by BasicSR from the top-level ``scale``.
            phase (str): ``train``, ``val`` or ``test``, added by BasicSR.
    """

    def __init__(self, opt: dict):
        super().__init__()
        self.opt = opt
        self.scale = opt['scale']
        self.mean, self.std = opt.get('mean'), opt.get('std')
        self.io_backend_opt = dict(opt['io_backend'])
        self.file_client = None
        self.name = opt.get('name', '?')
        root = opt['dataroot_gt']
        where = f"dataroot_gt of dataset '{self.name}'"
        backend = self.io_backend_opt.get('type')
        if backend == 'lmdb':
            if not osp.isfile(osp.join(root, 'meta_info.txt')):
                raise DatasetError(f'{where}: {root} is not an LMDB made by basicsr make-lmdb (no meta_info.txt)')
            self.io_backend_opt.update(db_paths=[root], client_keys=['gt'])
            self.paths = paths_from_lmdb(root)
        elif backend == 'disk':
            if not osp.isdir(root):
                raise DatasetError(f'{where}: folder {root} does not exist')
            if opt.get('meta_info_file'):
                self.paths = self._paths_from_meta_info(root, opt['meta_info_file'])
            else:
                self.paths = sorted(paths_from_folder(root))
        else:
            raise DatasetError(f"io_backend type of dataset '{self.name}' must be disk or lmdb; got {backend!r}")
        if not self.paths:
            raise DatasetError(f'{where}: no images in {root}')
        if opt['phase'] == 'train' and not (isinstance(opt.get('gt_size'), int) and opt['gt_size'] >= self.scale):
            raise DatasetError(f"gt_size of dataset '{self.name}' must be an integer of at least scale {self.scale}; "
                               f"got {opt.get('gt_size')!r}")

    def _paths_from_meta_info(self, root, meta_info_file):
        try:
            with open(meta_info_file, encoding='utf-8') as stream:
                names = [line.split(' ')[0] for line in stream.read().splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as err:
            raise DatasetError(f"meta_info_file of dataset '{self.name}': cannot read {meta_info_file}: "
                               f'{err}') from None
        return [osp.join(root, name) for name in names]

    def __getitem__(self, index):
        if self.file_client is None:
            backend = self.io_backend_opt.copy()
            self.file_client = FileClient(backend.pop('type'), **backend)
        path = self.paths[index]
        try:
            content = self.file_client.get(path, 'gt')
        except (OSError, KeyError) as err:
            raise DatasetError(f"dataset '{self.name}': cannot read {path}: {err}") from None
        header = read_header(content) if content else None
        if header is not None and header.pixels > DEFAULT_MAX_PIXELS:  # checked before decoding
            raise DatasetError(f"dataset '{self.name}': {path} is {header.width}x{header.height} pixels, more than "
                               f'the limit of {DEFAULT_MAX_PIXELS:,}')
        img_gt = imfrombytes(content) if content else None  # uint8 BGR, HWC (OpenCV raises on empty input)
        if img_gt is None:
            raise DatasetError(f"dataset '{self.name}': cannot decode image {path} (corrupt, empty or not an image)")
        img_gt = img_gt.astype(np.float32) / 255.  # as BasicSR's imfrombytes(float32=True), which the authors use

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

    def _normalize(self, image):
        mean = torch.tensor(self.mean if self.mean is not None else [0.0] * 3).view(-1, 1, 1)
        std = torch.tensor(self.std if self.std is not None else [1.0] * 3).view(-1, 1, 1)
        return (image - mean) / std

    def __len__(self):
        return len(self.paths)
