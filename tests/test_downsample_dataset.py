"""DownsampleImageDataset: the authors' DFLIP LR (torchvision ToPILImage -> PIL bicubic Resize -> ToTensor)."""
import random

import cv2
import numpy as np
import pytest
import torch
from helpers import image_folder  # noqa: E402

import esc_arch  # noqa: F401  (first: makes torchvision importable next to this torch)
from esc_arch.data import DownsampleImageDataset, pil_bicubic_downsample
from esc_arch.errors import DatasetError

from basicsr.data.transforms import augment  # noqa: E402
from basicsr.utils import img2tensor  # noqa: E402
from basicsr.utils.registry import DATASET_REGISTRY  # noqa: E402


def torchvision_lr(gt, scale):
    """The authors' LR, computed by torchvision itself."""
    from torchvision import transforms

    height, width = gt.shape[-2:]
    pipeline = transforms.Compose([
        transforms.ToPILImage(),
        transforms.Resize((height // scale, width // scale), interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.ToTensor()])
    return pipeline(gt)


def dataset(root, scale, phase='train', **extra):
    opt = dict(name='dflip', type='DownsampleImageDataset', dataroot_gt=str(root), io_backend=dict(type='disk'),
               scale=scale, phase=phase, gt_size=24 * scale, use_hflip=True, use_rot=True)
    return DownsampleImageDataset({**opt, **extra})


def test_registered_under_the_authors_name():
    assert DATASET_REGISTRY.get('DownsampleImageDataset') is DownsampleImageDataset


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_lr_is_torchvision_bicubic_of_the_augmented_crop(datasets_dir, scale):
    root = datasets_dir / 'Set5' / 'HR'
    data = dataset(root, scale, gt_size=32 * scale + 4 * scale)  # sides not multiples of 8, as crops may be
    for index in range(len(data)):
        for seed in range(2):  # two crops/augmentations of each image
            random.seed(seed * 100 + index)
            item = data[index]
            assert item['gt'].shape == (3, 36 * scale, 36 * scale) and item['lq'].shape == (3, 36, 36)
            torch.testing.assert_close(item['lq'], torchvision_lr(item['gt'], scale), atol=0, rtol=0)


def test_crop_and_augmentation_are_basicsr_s(datasets_dir):
    """Same random draws as the authors' order: crop corner, then BasicSR's augment."""
    scale, gt_size = 3, 60
    data = dataset(datasets_dir / 'Set14' / 'HR', scale, gt_size=gt_size)
    image = cv2.imread(str(data.paths[1])).astype(np.float32) / 255.
    random.seed(7)
    top, left = random.randint(0, image.shape[0] - gt_size), random.randint(0, image.shape[1] - gt_size)
    expected = augment(image[top:top + gt_size, left:left + gt_size], True, True)
    expected = img2tensor(expected, bgr2rgb=True, float32=True)
    random.seed(7)
    item = data[1]
    torch.testing.assert_close(item['gt'], expected, atol=0, rtol=0)
    torch.testing.assert_close(item['lq'], torchvision_lr(expected, scale), atol=0, rtol=0)


@pytest.mark.parametrize('size', [(37, 50), (64, 64), (17, 9)])
@pytest.mark.parametrize('scale', [2, 3, 4])
def test_pil_bicubic_matches_torchvision_including_truncation(size, scale):
    # Arbitrary floats: ToPILImage truncates x * 255 to uint8, a reimplementation that rounds would differ.
    image = torch.rand(3, *size)
    assert (image.mul(255).byte() != image.mul(255).round().byte()).any()
    torch.testing.assert_close(pil_bicubic_downsample(image, scale), torchvision_lr(image, scale), atol=0, rtol=0)


def test_lmdb_meta_info_and_normalisation(tmp_path):
    from esc_arch.cli import main

    folder = image_folder(tmp_path / 'hr', [(40, 44), (48, 40), (41, 52)])
    assert main(['make-lmdb', '-i', str(folder), '-o', str(tmp_path / 'hr.lmdb')]) == 0
    lmdb = dataset(tmp_path / 'hr.lmdb', 2, gt_size=32, io_backend=dict(type='lmdb'))
    disk = dataset(folder, 2, gt_size=32)
    assert len(lmdb) == len(disk) == 3
    random.seed(3)
    from_lmdb = lmdb[2]
    random.seed(3)
    from_disk = disk[2]
    torch.testing.assert_close(from_lmdb['gt'], from_disk['gt'])
    torch.testing.assert_close(from_lmdb['lq'], from_disk['lq'])

    (tmp_path / 'meta.txt').write_text('img2.png (41,52,3)\nimg0.png (40,44,3)\n')
    subset = dataset(folder, 2, gt_size=32, meta_info_file=str(tmp_path / 'meta.txt'), mean=[0.5] * 3,
                     std=[0.25] * 3)
    assert [path.split('/')[-1] for path in subset.paths] == ['img2.png', 'img0.png']
    random.seed(3)
    normalised = subset[0]
    torch.testing.assert_close(normalised['gt'], (from_disk['gt'] - 0.5) / 0.25)
    torch.testing.assert_close(normalised['lq'], (from_disk['lq'] - 0.5) / 0.25)


def test_validation_uses_the_whole_image_cropped_to_the_scale(tmp_path):
    folder = image_folder(tmp_path / 'hr', [(41, 50)])
    item = dataset(folder, 4, phase='val')[0]
    assert item['gt'].shape == (3, 40, 48) and item['lq'].shape == (3, 10, 12)
    torch.testing.assert_close(item['lq'], torchvision_lr(item['gt'], 4), atol=0, rtol=0)


def test_clear_errors(tmp_path):
    folder = image_folder(tmp_path / 'hr', [(30, 50)])
    with pytest.raises(DatasetError, match=r'img0.png is 50x30 pixels, smaller than the 48x48 training crop'):
        dataset(folder, 4, gt_size=48)[0]
    with pytest.raises(DatasetError, match='folder .*missing does not exist'):
        dataset(tmp_path / 'missing', 2)
    with pytest.raises(DatasetError, match=r'is not an LMDB made by basicsr make-lmdb \(no meta_info.txt\)'):
        dataset(folder, 2, io_backend=dict(type='lmdb'))
    with pytest.raises(DatasetError, match='gt_size .* must be an integer of at least scale 2; got None'):
        dataset(folder, 2, gt_size=None)
    (tmp_path / 'empty').mkdir()
    with pytest.raises(DatasetError, match='no images in'):
        dataset(tmp_path / 'empty', 2)
    (tmp_path / 'hr' / 'broken.png').write_bytes(b'not an image')
    with pytest.raises(DatasetError, match='cannot decode image .*broken.png'):
        dataset(folder, 2, gt_size=8)[0]
