"""Training and evaluation samples for arbitrary-scale SR (ESC+LTE), made as the authors' LIIF-style sampler does."""
import math
import random
from os import path as osp

import numpy as np
import torch
from PIL import Image
from torch.utils import data
from basicsr.data.data_util import paths_from_folder, paths_from_lmdb
from basicsr.utils import FileClient, imfrombytes, img2tensor
from basicsr.utils.registry import DATASET_REGISTRY

from esc_arch.archs.esc_lte import make_cell, make_coord
from esc_arch.errors import DatasetError
from esc_arch.images import DEFAULT_MAX_PIXELS, read_header

__all__ = ['ArbitraryScaleDataset', 'lr_size_for_scale', 'pil_bicubic_resize']

_FLOOR_EPS = 1e-9  # the authors' guard against 2.9999999 when dividing by the scale


def pil_bicubic_resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """torchvision's ``ToTensor(Resize(size, BICUBIC)(ToPILImage()(image)))`` (the authors' ``resize_fn``).

    The float image is multiplied by 255 and *truncated* to uint8, resized by PIL's antialiased
    bicubic filter to ``size = (height, width)``, and divided by 255.

    Args:
        image (Tensor): ``(3, H, W)`` RGB float image in [0, 1].
        size (tuple[int, int]): Output ``(height, width)``.

    Returns:
        Tensor: ``(3, height, width)`` float32, multiples of 1/255.
    """
    pixels = image.mul(255).byte().permute(1, 2, 0).numpy()
    resized = Image.fromarray(pixels).resize((size[1], size[0]), Image.BICUBIC)
    return torch.from_numpy(np.array(resized, dtype=np.uint8)).permute(2, 0, 1).float().div(255)


def lr_size_for_scale(height: int, width: int, scale: float) -> tuple[int, int]:
    """The authors' LR size of an HR image at ``scale``: ``floor(side / scale + 1e-9)`` per side."""
    return math.floor(height / scale + _FLOOR_EPS), math.floor(width / scale + _FLOOR_EPS)


@DATASET_REGISTRY.register()
class ArbitraryScaleDataset(data.Dataset):
    """HR images only; samples for arbitrary-scale SR as the ESC+LTE authors made them (LIIF's sampler).

    Train phase, per sample: a scale ``s ~ U(scale_min, scale_max)``; a random HR square of side
    ``round(lq_size * s)``; its LR of ``lq_size`` pixels by :func:`pil_bicubic_resize`; random
    vertical flip, horizontal flip and transpose (each p = 0.5, on both); then ``sample_q`` random HR
    pixels as targets. Returns ``lq`` ``(3, lq_size, lq_size)``, ``coord`` and ``cell`` ``(sample_q, 2)``
    (see :mod:`esc_arch.archs.esc_lte`) and ``gt`` ``(sample_q, 3)`` RGB in [0, 1].

    Val/test phase (the authors' evaluation): at the scale ``s`` of the options, LR size
    ``floor(H / s + 1e-9)`` x ``floor(W / s + 1e-9)``, HR cropped to ``round(h_lr s)`` x ``round(w_lr s)``,
    LR made from it by :func:`pil_bicubic_resize`. Returns ``lq`` ``(3, h, w)``, ``gt`` the cropped HR
    ``(3, H', W')`` and ``scale``.

    Args:
        opt (dict): Config for datasets. It contains the following keys:
            dataroot_gt (str): Folder of HR images, or an LMDB (read through its ``meta_info.txt``)
                with ``io_backend.type: lmdb``.
            io_backend (dict): ``{type: disk}`` or ``{type: lmdb}``.
            lq_size (int): LR patch side in the train phase. Default: 64.
            scale_min (float): Smallest training scale. Default: 1.
            scale_max (float): Largest training scale. Default: 4.
            sample_q (int | None): Target pixels per training sample; None: all of them (then crops differ in
                size between samples, so only batch size 1 collates). Default: 2304.
            augment (bool): Random flips and transpose in training. Default: True.
            scale (float): Evaluation scale (val/test), added by BasicSR from the top-level ``scale``.
            phase (str): ``train``, ``val`` or ``test``, added by BasicSR.
    """

    def __init__(self, opt: dict):
        super().__init__()
        self.opt = opt
        self.name = opt.get('name', '?')
        self.train = opt['phase'] == 'train'
        self.lq_size = opt.get('lq_size', 64)
        self.scale_min, self.scale_max = float(opt.get('scale_min', 1)), float(opt.get('scale_max', 4))
        self.sample_q = opt.get('sample_q', 2304)
        self.scale = opt.get('scale')
        self._check_options()
        self.io_backend_opt = dict(opt['io_backend'])
        self.file_client = None
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
            self.paths = sorted(paths_from_folder(root))
        else:
            raise DatasetError(f"io_backend type of dataset '{self.name}' must be disk or lmdb; got {backend!r}")
        if not self.paths:
            raise DatasetError(f'{where}: no images in {root}')

    def _check_options(self):
        where = f"dataset '{self.name}'"
        if self.train:
            if not (isinstance(self.lq_size, int) and self.lq_size >= 1):
                raise DatasetError(f'lq_size of {where} must be a positive integer; got {self.lq_size!r}')
            if not 0 < self.scale_min <= self.scale_max:
                raise DatasetError(f'{where} needs 0 < scale_min <= scale_max; got {self.scale_min}, {self.scale_max}')
            if self.sample_q is not None and not (isinstance(self.sample_q, int) and self.sample_q >= 1):
                raise DatasetError(f'sample_q of {where} must be a positive integer or null; got {self.sample_q!r}')
        elif not (isinstance(self.scale, (int, float)) and self.scale > 0):
            raise DatasetError(f'{where} needs a positive scale for {self.opt["phase"]}; got {self.scale!r}')

    def _read(self, path):
        """The image at ``path`` as an RGB float tensor ``(3, H, W)`` in [0, 1] (size checked before decoding)."""
        if self.file_client is None:
            backend = self.io_backend_opt.copy()
            self.file_client = FileClient(backend.pop('type'), **backend)
        try:
            content = self.file_client.get(path, 'gt')
        except (OSError, KeyError) as err:
            raise DatasetError(f"dataset '{self.name}': cannot read {path}: {err}") from None
        header = read_header(content) if content else None
        if header is not None and header.pixels > DEFAULT_MAX_PIXELS:
            raise DatasetError(f"dataset '{self.name}': {path} is {header.width}x{header.height} pixels, more than "
                               f'the limit of {DEFAULT_MAX_PIXELS:,}')
        image = imfrombytes(content) if content else None  # uint8 BGR, HWC
        if image is None:
            raise DatasetError(f"dataset '{self.name}': cannot decode image {path} (corrupt, empty or not an image)")
        return img2tensor(image.astype(np.float32) / 255., bgr2rgb=True, float32=True)

    def __getitem__(self, index):
        path = self.paths[index]
        image = self._read(path)
        sample = self._training_sample(image, path) if self.train else self._evaluation_sample(image, path)
        return {**sample, 'lq_path': path, 'gt_path': path}

    def _training_sample(self, image, path):
        scale = random.uniform(self.scale_min, self.scale_max)
        hr_side = round(self.lq_size * scale)
        height, width = image.shape[-2:]
        if height < hr_side or width < hr_side:
            raise DatasetError(f"dataset '{self.name}': {path} is {width}x{height} pixels, smaller than the "
                               f'{hr_side}x{hr_side} crop of lq_size {self.lq_size} at scale {scale:.2f}')
        top, left = random.randint(0, height - hr_side), random.randint(0, width - hr_side)
        hr = image[:, top:top + hr_side, left:left + hr_side]
        lq = pil_bicubic_resize(hr, (self.lq_size, self.lq_size))
        if self.opt.get('augment', True):
            flip_rows, flip_cols, transpose = (random.random() < 0.5 for _ in range(3))
            lq, hr = (_augment(img, flip_rows, flip_cols, transpose) for img in (lq, hr))
        coord = make_coord(hr_side, hr_side)
        rgb = hr.reshape(3, -1).t()
        if self.sample_q is not None:
            if self.sample_q > len(coord):
                raise DatasetError(f"dataset '{self.name}': sample_q {self.sample_q} exceeds the {len(coord)} pixels "
                                   f'of a {hr_side}x{hr_side} crop (scale {scale:.2f})')
            chosen = torch.from_numpy(np.random.choice(len(coord), self.sample_q, replace=False))
            coord, rgb = coord[chosen], rgb[chosen]
        return {'lq': lq, 'coord': coord, 'cell': make_cell(hr_side, hr_side, len(coord)), 'gt': rgb.contiguous()}

    def _evaluation_sample(self, image, path):
        scale = float(self.scale)
        lr_height, lr_width = lr_size_for_scale(*image.shape[-2:], scale)
        if lr_height < 1 or lr_width < 1:
            raise DatasetError(f"dataset '{self.name}': {path} ({image.shape[-1]}x{image.shape[-2]}) is smaller than "
                               f'the scale {scale}')
        hr = image[:, :round(lr_height * scale), :round(lr_width * scale)]
        return {'lq': pil_bicubic_resize(hr, (lr_height, lr_width)), 'gt': hr.contiguous(), 'scale': scale}

    def __len__(self):
        return len(self.paths)


def _augment(image, flip_rows, flip_cols, transpose):
    if flip_rows:
        image = image.flip(-2)
    if flip_cols:
        image = image.flip(-1)
    return image.transpose(-2, -1) if transpose else image
