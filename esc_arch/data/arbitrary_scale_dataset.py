"""Training and evaluation samples for arbitrary-scale SR (ESC+LTE), made as the authors' LIIF-style code does.

The authors evaluate x2, x3 and x4 on the MATLAB-bicubic LR files of the benchmarks
(:class:`PairedArbitraryScaleDataset`), and x6, x8 and above on LRs made from the HR images with PIL's bicubic
(:class:`ArbitraryScaleDataset`); both give the same sample keys to the model.
"""
import math
import random

import numpy as np
import torch

from esc_arch.archs.esc_lte import make_cell, make_coord
from esc_arch.errors import DatasetError

from basicsr.utils import img2tensor
from basicsr.utils.registry import DATASET_REGISTRY

from .hr_images import HRImageDataset, pil_bicubic_resize
from .paired_image_dataset import CheckedPairedImageDataset

__all__ = ['ArbitraryScaleDataset', 'PairedArbitraryScaleDataset', 'lr_size_for_scale', 'pil_bicubic_resize']

_FLOOR_EPS = 1e-9  # the authors' guard against 2.9999999 when dividing by the scale


def lr_size_for_scale(height: int, width: int, scale: float) -> tuple[int, int]:
    """The authors' LR size of an HR image at ``scale``: ``floor(side / scale + 1e-9)`` per side."""
    return math.floor(height / scale + _FLOOR_EPS), math.floor(width / scale + _FLOOR_EPS)


@DATASET_REGISTRY.register()
class ArbitraryScaleDataset(HRImageDataset):
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
        opt (dict): Config for datasets: ``dataroot_gt``, ``io_backend`` and ``meta_info_file`` (the HR
            images, see :class:`~esc_arch.data.hr_images.HRImageDataset`), and the following keys:
            lq_size (int): LR patch side in the train phase. Default: 64.
            scale_min (float): Smallest training scale. Default: 1.
            scale_max (float): Largest training scale. Default: 4.
            sample_q (int | None): Target pixels per training sample; None: all of them (then crops differ in
                size between samples, so only batch size 1 collates). Default: 2304.
            augment (bool): Random flips and transpose in training. Default: True.
            scale (float): Evaluation scale (val/test), added by BasicSR from the top-level ``scale``.
            phase (str): ``train``, ``val`` or ``test``, added by BasicSR.
    """

    def __init__(self, opt: dict) -> None:
        super().__init__(opt)
        self.train = opt['phase'] == 'train'
        self.lq_size = opt.get('lq_size', 64)
        self.scale_min, self.scale_max = float(opt.get('scale_min', 1)), float(opt.get('scale_max', 4))
        self.sample_q = opt.get('sample_q', 2304)
        self.scale = opt.get('scale')
        self._check_options()

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

    def __getitem__(self, index: int) -> dict:
        path = self.paths[index]
        image = img2tensor(self.read_hr(path).astype(np.float32) / 255., bgr2rgb=True, float32=True)
        sample = self._training_sample(image, path) if self.train else self._evaluation_sample(image, path)
        return {**sample, 'lq_path': path, 'gt_path': path}

    def _training_sample(self, image: torch.Tensor, path: str) -> dict:
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

    def _evaluation_sample(self, image: torch.Tensor, path: str) -> dict:
        scale = float(self.scale)
        lr_height, lr_width = lr_size_for_scale(*image.shape[-2:], scale)
        if lr_height < 1 or lr_width < 1:
            raise DatasetError(f"dataset '{self.name}': {path} ({image.shape[-1]}x{image.shape[-2]}) is smaller than "
                               f'the scale {scale}')
        hr = image[:, :round(lr_height * scale), :round(lr_width * scale)]
        return {'lq': pil_bicubic_resize(hr, (lr_height, lr_width)), 'gt': hr.contiguous(), 'scale': scale}


@DATASET_REGISTRY.register()
class PairedArbitraryScaleDataset(CheckedPairedImageDataset):
    """Evaluation of arbitrary-scale SR on LR files at an integer scale, as the ESC+LTE authors test x2, x3, x4.

    Their ``paired-image-folders`` + ``sr-implicit-paired`` evaluation: the LR file as it is (the
    benchmark's MATLAB-bicubic ``LR_bicubic/X{s}``) and the HR cropped to ``h_lr * s`` x ``w_lr * s``.
    Reading, pairing and the size check are :class:`~esc_arch.data.CheckedPairedImageDataset`'s (an HR
    larger than LR size x ``scale`` by ``scale`` pixels or more is refused). Returns the keys of
    :class:`ArbitraryScaleDataset`'s evaluation samples: ``lq`` ``(3, h, w)`` and ``gt`` ``(3, h s, w s)``,
    RGB in [0, 1], ``scale`` (float), ``lq_path`` and ``gt_path``; so ``ArbitraryScaleModel`` scores it with
    the same PSNR (:func:`~esc_arch.models.arbitrary_scale_model.calculate_lte_psnr`).

    Args:
        opt (dict): ``PairedImageDataset``'s options for validation/testing: ``dataroot_gt``, ``dataroot_lq``,
            ``filename_tmpl``, ``io_backend``, ``meta_info_file``, and ``scale`` (a positive integer, added
            by BasicSR from the top-level ``scale``) and ``phase`` (``val`` or ``test``).
    """

    def __init__(self, opt: dict) -> None:
        where = f"dataset '{opt.get('name', '?')}'"
        if opt.get('phase') == 'train':
            raise DatasetError(f'{where}: PairedArbitraryScaleDataset is for validation and testing; '
                               'train arbitrary-scale networks with ArbitraryScaleDataset')
        scale = opt.get('scale')
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not float(scale).is_integer() or scale < 1:
            raise DatasetError(f'{where} pairs LR files with HR images at an integer scale; got scale {scale!r} '
                               '(other scales: ArbitraryScaleDataset, which makes the LR from the HR)')
        super().__init__({**opt, 'scale': int(scale)})

    def __getitem__(self, index: int) -> dict:
        return {**super().__getitem__(index), 'scale': float(self.opt['scale'])}


def _augment(image: torch.Tensor, flip_rows: bool, flip_cols: bool, transpose: bool) -> torch.Tensor:
    if flip_rows:
        image = image.flip(-2)
    if flip_cols:
        image = image.flip(-1)
    return image.transpose(-2, -1) if transpose else image
