"""``CheckedPairedImageDataset``: BasicSR's ``PairedImageDataset`` with errors that name the image files.

basicsr 1.4.2's ``PairedImageDataset``

* fails on a corrupt or empty image with ``'NoneType' object has no attribute 'astype'`` or an
  OpenCV assertion, naming no file;
* in training, rejects a pair whose sizes do not match ``scale`` with a message naming no file;
* at validation and test, crops the HR image to LR size x ``scale`` without checking: an LR folder
  made for another scale is scored against the top-left part of each HR image, silently;
* stops with an ``AssertionError`` when the LR and HR folders do not pair up.

In :class:`CheckedPairedImageDataset` each of these raises :class:`~esc_arch.errors.DatasetError`
naming the dataset and the files; any other error keeps its type and gets the pair as a note. At
validation and test the HR size is read from the file header and must be LR size x ``scale`` plus
less than ``scale`` pixels (the remainder that BasicSR crops). Images are still decoded as BasicSR
decodes them (OpenCV ``IMREAD_COLOR``): grayscale is replicated to three channels, alpha is dropped
and 16-bit images are reduced to 8 bits.

Options files name it ``type: CheckedPairedImageDataset``; the ``basicsr`` command (and
:func:`esc_arch.compat.apply_all`) also builds it for ``type: PairedImageDataset`` (the patch
``checked-paired-image-dataset`` of :mod:`esc_arch.compat.table`).
"""
import io

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from esc_arch.errors import DatasetError

from basicsr.data.paired_image_dataset import PairedImageDataset
from basicsr.utils.registry import DATASET_REGISTRY

__all__ = ['CheckedPairedImageDataset', 'check_pair_sizes', 'explain_error', 'unreadable_reason']

_EXIF_ORIENTATION = 0x0112  # values 5 to 8 mean the stored image is turned by 90 degrees


def _dataset_name(opt: dict) -> str:
    return f"dataset '{opt.get('name', '?')}'"


def _location(dataset: Dataset, path: str, client_key: str) -> str:
    """The file path, or for an LMDB the key and the database."""
    if 'db_paths' in dataset.io_backend_opt:
        return f'{path} in {dataset.opt[f"dataroot_{client_key}"]}'
    return path


def unreadable_reason(dataset: Dataset, path: str, client_key: str) -> str | None:
    """Why the image ``path`` of ``dataset`` cannot be decoded, or None when it can."""
    try:
        content = dataset.file_client.get(path, client_key)
    except OSError as error:
        return error.strerror or str(error)
    if content is None:
        return 'no such key in the LMDB'
    if len(content) == 0:
        return 'the file is empty'
    if cv2.imdecode(np.frombuffer(content, np.uint8), cv2.IMREAD_COLOR) is None:
        return 'not a readable image (corrupt, truncated or an unsupported format)'
    return None


def explain_error(dataset: Dataset, pair: dict, error: Exception) -> Exception:
    """The error to raise for ``error`` from loading ``pair`` (a dict with ``lq_path`` and ``gt_path``)."""
    name = _dataset_name(dataset.opt)
    lq, gt = (_location(dataset, pair[f'{key}_path'], key) for key in ('lq', 'gt'))
    if dataset.file_client is not None:
        for key, location in (('lq', lq), ('gt', gt)):
            reason = unreadable_reason(dataset, pair[f'{key}_path'], key)
            if reason:
                return DatasetError(f'{name}: cannot read {location}: {reason}')
    if isinstance(error, ValueError):  # basicsr's paired_random_crop: sizes that do not fit scale or gt_size
        message = ' '.join(str(arg).strip() for arg in error.args)
        return DatasetError(f'{name}: {message} (LR {lq}, HR {gt})')
    error.add_note(f'while loading LR {lq} and HR {gt} of {name}')
    return error


def check_pair_sizes(dataset: Dataset, pair: dict, item: dict) -> None:
    """At validation/test, the HR image (before BasicSR crops it) must be LR size x scale, up to scale - 1 more."""
    scale = dataset.opt['scale']
    lq_height, lq_width = item['lq'].shape[-2:]
    try:
        image = Image.open(io.BytesIO(dataset.file_client.get(pair['gt_path'], 'gt')))
        gt_width, gt_height = image.size
        if image.getexif().get(_EXIF_ORIENTATION) in (5, 6, 7, 8):  # OpenCV, and so BasicSR, applies the rotation
            gt_width, gt_height = gt_height, gt_width
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError):  # only the cropped size is left
        gt_height, gt_width = item['gt'].shape[-2:]
    if gt_height // scale != lq_height or gt_width // scale != lq_width:
        lq, gt = (_location(dataset, pair[f'{key}_path'], key) for key in ('lq', 'gt'))
        raise DatasetError(
            f'{_dataset_name(dataset.opt)}: HR {gt} is {gt_width}x{gt_height} pixels and LR {lq} is '
            f'{lq_width}x{lq_height}; at scale {scale} the HR must be {lq_width * scale}x{lq_height * scale} '
            f'(up to {scale - 1} more pixels are cropped). Was the LR made for another scale?')


@DATASET_REGISTRY.register()
class CheckedPairedImageDataset(PairedImageDataset):
    """BasicSR's ``PairedImageDataset`` (same options) whose errors name the dataset and the image files,
    and which refuses, at validation and test, an LR/HR pair whose sizes do not fit ``scale``.

    Args:
        opt (dict): ``PairedImageDataset``'s options (``dataroot_gt``, ``dataroot_lq``, ``io_backend``,
            ``filename_tmpl``, ``gt_size``, ``use_hflip``, ``use_rot``, ``scale``, ``phase``...).
    """

    def __init__(self, opt: dict) -> None:
        try:
            super().__init__(opt)
        except AssertionError as error:  # basicsr's paired_paths_from_* pair the folders with asserts
            raise DatasetError(
                f'{_dataset_name(opt)}: {error} (dataroot_lq {opt.get("dataroot_lq")}, dataroot_gt '
                f'{opt.get("dataroot_gt")}, filename_tmpl "{opt.get("filename_tmpl", "{}")}")') from None

    def __getitem__(self, index: int) -> dict:
        pair = self.paths[index]
        try:
            item = super().__getitem__(index)
        except Exception as error:
            explained = explain_error(self, pair, error)
            if explained is error:
                raise
            raise explained from None
        if self.opt['phase'] != 'train':
            check_pair_sizes(self, pair, item)
        return item

