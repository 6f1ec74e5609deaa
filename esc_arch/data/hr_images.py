"""What the datasets that make their LR on the fly share: finding and safely reading the HR images, PIL's bicubic.

:class:`~esc_arch.data.DownsampleImageDataset`, :class:`~esc_arch.data.ArbitraryScaleDataset` and
:class:`~esc_arch.data.HROnlyBicubicDataset` derive from :class:`HRImageDataset`.
"""
from os import path as osp

import numpy as np
import torch
from PIL import Image
from torch.utils import data

from esc_arch.errors import DatasetError
from esc_arch.images import DEFAULT_MAX_PIXELS, read_header

from basicsr.data.data_util import paths_from_folder, paths_from_lmdb
from basicsr.utils import FileClient, imfrombytes

__all__ = ['HRImageDataset', 'pil_bicubic_resize']


def pil_bicubic_resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """torchvision's ``ToTensor(Resize(size, BICUBIC)(ToPILImage()(image)))`` (the authors' ``resize_fn``).

    The float image is multiplied by 255 and *truncated* to uint8 (``ToPILImage``), resized by PIL's
    antialiased bicubic filter to ``size = (height, width)``, and divided by 255. It is not MATLAB's
    bicubic (``basicsr make-lr``, :class:`~esc_arch.data.HROnlyBicubicDataset`).

    Args:
        image (Tensor): ``(3, H, W)`` RGB float image in [0, 1].
        size (tuple[int, int]): Output ``(height, width)``.

    Returns:
        Tensor: ``(3, height, width)`` float32, multiples of 1/255.
    """
    pixels = image.mul(255).byte().permute(1, 2, 0).numpy()
    resized = Image.fromarray(pixels).resize((size[1], size[0]), Image.BICUBIC)
    return torch.from_numpy(np.array(resized, dtype=np.uint8)).permute(2, 0, 1).float().div(255)


class HRImageDataset(data.Dataset):
    """Base of the datasets made from HR images alone: finds the images of ``dataroot_gt`` and reads them.

    Sets ``opt``, ``name``, ``paths`` (sorted file paths, or the keys of the LMDB), ``io_backend_opt``
    and ``file_client`` (opened on the first read, so once in each DataLoader worker).

    Args:
        opt (dict): Config for datasets. This class reads the following keys:
            name (str, optional): Named in error messages.
            dataroot_gt (str): Folder of HR images, or an LMDB (read through its ``meta_info.txt``)
                with ``io_backend.type: lmdb``.
            io_backend (dict): ``{type: disk}`` or ``{type: lmdb}``.
            meta_info_file (str, optional): With a folder, the images to use: one file name per line
                (relative to ``dataroot_gt``; anything after a space is ignored). Default: every image.
    """

    def __init__(self, opt: dict) -> None:
        super().__init__()
        self.opt = opt
        self.name = opt.get('name', '?')
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
            if opt.get('meta_info_file'):
                self.paths = self._paths_from_meta_info(root, opt['meta_info_file'])
            else:
                self.paths = sorted(paths_from_folder(root))
        else:
            raise DatasetError(f"io_backend type of dataset '{self.name}' must be disk or lmdb; got {backend!r}")
        if not self.paths:
            raise DatasetError(f'{where}: no images in {root}')

    def _paths_from_meta_info(self, root: str, meta_info_file: str) -> list[str]:
        try:
            with open(meta_info_file, encoding='utf-8') as stream:
                names = [line.split(' ')[0] for line in stream.read().splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as err:
            raise DatasetError(f"meta_info_file of dataset '{self.name}': cannot read {meta_info_file}: "
                               f'{err}') from None
        return [osp.join(root, name) for name in names]

    def read_hr(self, path: str) -> np.ndarray:
        """The image at ``path`` as BasicSR decodes it: uint8 BGR, HWC; its size is checked before decoding."""
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
        image = imfrombytes(content) if content else None  # OpenCV raises on empty input
        if image is None:
            raise DatasetError(f"dataset '{self.name}': cannot decode image {path} (corrupt, empty or not an image)")
        return image

    def __len__(self) -> int:
        return len(self.paths)
