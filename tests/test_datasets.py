"""MATLAB-bicubic resizing, the Bicubic baseline network and the HR-only dataset."""
import random

import cv2
import numpy as np
import pytest
import torch
from helpers import hr_only_dataset, image_folder

from esc_arch.archs import Bicubic
from esc_arch.cli import main
from esc_arch.data import bicubic_downsample, matlab_imresize
from esc_arch.errors import DatasetError

from basicsr.data.transforms import mod_crop  # noqa: E402  (after esc_arch, which makes basicsr importable)
from basicsr.metrics import calculate_psnr  # noqa: E402
from basicsr.utils import img2tensor, tensor2img  # noqa: E402
from basicsr.utils.matlab_functions import imresize  # noqa: E402


def to_uint8(image):
    return np.floor(np.asarray(image) * 255 + 0.5).astype(np.uint8)


@pytest.mark.parametrize('scale', [0.25, 1 / 3, 3, 4])
def test_matlab_imresize_matches_basicsr_batched(scale):
    images = torch.rand(2, 3, 13, 17, dtype=torch.float32)
    ours = matlab_imresize(images, scale)
    for image, result in zip(images, ours):
        torch.testing.assert_close(result, imresize(image, scale), atol=1e-5, rtol=0)
    assert ours.dtype == images.dtype


@pytest.mark.parametrize('height, width', [(1, 1), (1, 3), (2, 5)])
def test_matlab_imresize_of_tiny_images(height, width):
    image = torch.rand(3, height, width)
    result = matlab_imresize(image, 4)
    assert result.shape == (3, 4 * height, 4 * width) and torch.isfinite(result).all()
    # a constant image stays constant (weights sum to one, mirrored borders)
    torch.testing.assert_close(matlab_imresize(torch.full((1, height, width), 0.3), 3),
                               torch.full((1, 3 * height, 3 * width), 0.3))


def test_bicubic_downsample_reproduces_set5_and_gray_set14_files(datasets_dir):
    for name, dataset_name in (('butterfly', 'Set5'), ('bridge', 'Set14')):  # bridge is a grayscale PNG
        hr = cv2.imread(str(datasets_dir / dataset_name / 'HR' / f'{name}.png'), cv2.IMREAD_UNCHANGED)
        for scale in (2, 3, 4):
            stored = cv2.imread(str(datasets_dir / dataset_name / 'LR_bicubic' / f'X{scale}' / f'{name}x{scale}.png'),
                                cv2.IMREAD_UNCHANGED)
            np.testing.assert_array_equal(to_uint8(bicubic_downsample(mod_crop(hr, scale), scale)), stored)


def test_bicubic_network_upsamples_batches_like_matlab():
    network = Bicubic(upscaling_factor=3)
    images = torch.rand(2, 3, 7, 9)
    assert list(network.parameters()) == [] and 'upscaling_factor=3' in repr(network)
    torch.testing.assert_close(network(images)[1], imresize(images[1], 3), atol=1e-5, rtol=0)


@pytest.mark.parametrize('scale, psnr', [(2, 33.68), (3, 30.40)])  # MATLAB bicubic PSNR-Y, Set5
def test_bicubic_network_gives_the_set5_baselines(datasets_dir, scale, psnr):
    network, values = Bicubic(upscaling_factor=scale), []
    for lr_path in sorted((datasets_dir / 'Set5' / 'LR_bicubic' / f'X{scale}').glob('*.png')):
        lr = cv2.imread(str(lr_path)).astype(np.float32) / 255.
        hr = cv2.imread(str(datasets_dir / 'Set5' / 'HR' / lr_path.name.replace(f'x{scale}.png', '.png')))
        sr = tensor2img(network(img2tensor(lr, bgr2rgb=True)[None]))
        values.append(calculate_psnr(sr, hr[:sr.shape[0], :sr.shape[1]], crop_border=scale, test_y_channel=True))
    assert np.mean(values) == pytest.approx(psnr, abs=0.01)


def test_training_crop_lr_equals_the_crop_of_the_whole_image_lr(tmp_path):
    root = image_folder(tmp_path / 'hr', [(50, 70)])  # 50 is not a multiple of 4: modcrop applies
    hr = mod_crop(cv2.imread(str(root / 'img0.png')), 4)[..., ::-1]  # BGR -> RGB, as the dataset returns
    full = bicubic_downsample(hr, 4)
    data = hr_only_dataset(root)
    corners = set()
    for seed in range(30):
        random.seed(seed)
        item = data[0]
        lq, gt = item['lq'].permute(1, 2, 0).numpy(), item['gt'].permute(1, 2, 0).numpy()
        matches = [(top, left) for top in range(full.shape[0] - 7) for left in range(full.shape[1] - 7)
                   if np.array_equal(full[top:top + 8, left:left + 8], lq)]
        assert len(matches) == 1, 'the LR crop is not a crop of the whole image LR'
        top, left = matches[0]
        np.testing.assert_array_equal(to_uint8(gt), hr[4 * top:4 * top + 32, 4 * left:4 * left + 32])
        corners.add((top, left))
    last_top, last_left = full.shape[0] - 8, full.shape[1] - 8
    assert any(top in (0, last_top) or left in (0, last_left) for top, left in corners)  # crops at a border
    assert any(0 < top < last_top and 0 < left < last_left for top, left in corners)  # and inside


def test_augmented_pair_stays_aligned(tmp_path):
    data = hr_only_dataset(image_folder(tmp_path / 'hr', [(64, 64)]), use_hflip=True, use_rot=True)
    for seed in range(8):
        random.seed(seed)
        item = data[0]
        assert item['gt'].shape == (3, 32, 32) and item['lq'].shape == (3, 8, 8)
        expected = bicubic_downsample(to_uint8(item['gt'].permute(1, 2, 0).numpy()), 4)
        # the LR used context beyond the crop; inside, the two agree up to the rounding order
        inner = np.abs(expected - item['lq'].permute(1, 2, 0).numpy())[2:-2, 2:-2]
        assert inner.max() <= 1.5 / 255


def test_validation_phase_uses_the_whole_modcropped_image(datasets_dir):
    data = hr_only_dataset(datasets_dir / 'Set5' / 'HR', phase='val', scale=3)
    assert len(data) == 5 and data.paths == sorted(data.paths)
    item = data[data.paths.index(str(datasets_dir / 'Set5' / 'HR' / 'woman.png'))]
    stored = cv2.imread(str(datasets_dir / 'Set5' / 'LR_bicubic' / 'X3' / 'womanx3.png'))[..., ::-1]
    np.testing.assert_array_equal(to_uint8(item['lq'].permute(1, 2, 0).numpy()), stored)
    assert item['gt'].shape[-2:] == (3 * stored.shape[0], 3 * stored.shape[1])


def test_lmdb_backend_reads_what_the_folder_holds(tmp_path):
    root = image_folder(tmp_path / 'hr', [(40, 40), (48, 44)])
    assert main(['make-lmdb', '-i', str(root), '-o', str(tmp_path / 'hr.lmdb'), '--workers', '1']) == 0
    from_disk = hr_only_dataset(root, phase='val')
    from_lmdb = hr_only_dataset(tmp_path / 'hr.lmdb', phase='val', io_backend=dict(type='lmdb'))
    assert from_lmdb.paths == ['img0', 'img1']
    for index in range(2):
        torch.testing.assert_close(from_lmdb[index]['lq'], from_disk[index]['lq'])
        torch.testing.assert_close(from_lmdb[index]['gt'], from_disk[index]['gt'])


def test_bad_data_is_named(tmp_path):
    with pytest.raises(DatasetError, match=f"dataroot_gt of dataset 'hr': folder {tmp_path / 'none'} does not"):
        hr_only_dataset(tmp_path / 'none')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ValueError, match='no images in'):
        hr_only_dataset(tmp_path / 'empty')
    with pytest.raises(DatasetError, match='not an LMDB made by basicsr make-lmdb'):
        hr_only_dataset(tmp_path / 'empty', io_backend=dict(type='lmdb'))
    with pytest.raises(ValueError, match='gt_size 30 .* is not a multiple of scale 4'):
        hr_only_dataset(image_folder(tmp_path / 'hr', [(40, 40)]), gt_size=30)

    root = image_folder(tmp_path / 'mixed', [(40, 40), (20, 40)])
    (root / 'img2.png').write_bytes(b'not a png')
    data = hr_only_dataset(root)
    with pytest.raises(ValueError, match=f'{root / "img1.png"}: image of 40x20 pixels is smaller than the 32x32'):
        data[1]
    with pytest.raises(ValueError, match=f'cannot decode image {root / "img2.png"}'):
        data[2]
