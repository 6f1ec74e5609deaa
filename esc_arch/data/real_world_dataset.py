"""BasicSR's Real-ESRGAN degradation dataset, reading a plain folder of HR images as well as a meta_info list.

Registered as ``RealESRGANDataset_esc``. basicsr 1.4.2 registers its own class as
``RealESRGANDataset_basicsr`` and finds it for ``type: RealESRGANDataset``; the ``basicsr`` command
(and :func:`esc_arch.compat.apply_all`) makes that name build this class instead (the patch
``folder-real-esrgan-dataset`` of :mod:`esc_arch.compat.table`), so that the authors' options files
(and Real-ESRGAN's) get it.
"""
import os
from os import path as osp

from esc_arch.errors import DatasetError
from esc_arch.images import IMAGE_EXTENSIONS

from basicsr.data.realesrgan_dataset import RealESRGANDataset as BasicSRRealESRGANDataset
from basicsr.utils import scandir
from basicsr.utils.registry import DATASET_REGISTRY

from .paired_image_dataset import unreadable_reason

__all__ = ['RealESRGANDataset']


@DATASET_REGISTRY.register(suffix='esc')
class RealESRGANDataset(BasicSRRealESRGANDataset):
    """HR images for real-world training; the models degrade them (Real-ESRGAN's two-stage pipeline).

    BasicSR's ``RealESRGANDataset`` (blur kernels drawn per image, HR cropped or reflect-padded to 400
    pixels, flips), with:

    * a folder of HR images read without a list: when ``meta_info`` is not given, ``dataroot_gt`` is
      scanned, subfolders included (as the ESC authors' version does);
    * an LMDB (``io_backend.type: lmdb``) read through its own ``meta_info.txt``, as in BasicSR;
    * a :class:`~esc_arch.errors.DatasetError` naming the folder, list or file for a missing or empty
      folder, a missing list, or an image that cannot be read (BasicSR fails with an unrelated error).

    Args:
        opt (dict): BasicSR's ``RealESRGANDataset`` options. Those read here:
            dataroot_gt (str): Folder of HR images, or an LMDB (``*.lmdb``) with ``io_backend.type: lmdb``.
            meta_info (str): Optional (disk only): a text file listing image paths relative to
                ``dataroot_gt``, one per line (the first word of each line). Default: scan the folder.
            io_backend (dict): ``{type: disk}`` or ``{type: lmdb}``.
            The kernel options (``blur_kernel_size``, ``kernel_list``, ... ``final_sinc_prob``) and
            ``use_hflip``/``use_rot`` are BasicSR's.
    """

    def __init__(self, opt: dict) -> None:
        where = f"dataset '{opt.get('name', '?')}'"
        root = opt['dataroot_gt']
        backend = (opt.get('io_backend') or {}).get('type', 'disk')
        scan = backend == 'disk' and not opt.get('meta_info')
        if backend == 'disk' and not osp.isdir(root):
            raise DatasetError(f'{where}: dataroot_gt folder not found: {root}')
        try:
            # BasicSR's __init__ reads the list of a disk dataset from meta_info: give it an empty one and
            # scan the folder instead.
            super().__init__({**opt, 'meta_info': os.devnull} if scan else opt)
        except OSError as error:
            listing = osp.join(root, 'meta_info.txt') if backend == 'lmdb' else opt.get('meta_info')
            raise DatasetError(f'{where}: cannot read the image list {listing}: {error.strerror or error}') from None
        except ValueError as error:  # BasicSR: an LMDB dataroot_gt not named *.lmdb
            raise DatasetError(f'{where}: {error}') from None
        self.opt = opt
        if scan:
            self.paths = sorted(
                osp.join(root, relative) for relative in scandir(root, recursive=True)
                if relative.lower().endswith(IMAGE_EXTENSIONS) and not osp.basename(relative).startswith('.'))
        if not self.paths:
            listing = opt.get('meta_info') or (osp.join(root, 'meta_info.txt') if backend == 'lmdb' else None)
            raise DatasetError(f'{where}: no images in {listing or root}'
                               + ('' if listing else f' (looked for {", ".join(IMAGE_EXTENSIONS)}, in subfolders too)'))

    def __getitem__(self, index: int) -> dict:
        try:
            return super().__getitem__(index)
        except Exception as error:
            path = self.paths[index]
            reason = unreadable_reason(self, path, 'gt') if self.file_client is not None else None
            if reason is None:
                raise
            location = f'{path} in {self.opt["dataroot_gt"]}' if 'db_paths' in self.io_backend_opt else path
            raise DatasetError(f"dataset '{self.opt.get('name', '?')}': cannot read {location}: {reason}") from error
