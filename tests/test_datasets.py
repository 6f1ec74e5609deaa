"""MATLAB-bicubic resizing, the Bicubic baseline network, the HR-only dataset, and the paired dataset's checks:
unreadable, empty or odd images and pairs of the wrong size are named in one line."""
import random
import re

import cv2
import numpy as np
import pytest
import torch
from helpers import (  # noqa: E402
    SCALE,
    assert_one_line_error,
    hr_only_dataset,
    image_folder,
    make_pairs,
    outcome,
    paired_dataset,
    run_basicsr,
    train_options,
    write_yaml,
)

from esc_arch.archs import Bicubic
from esc_arch.cli import basicsr_pipeline, main
from esc_arch.data import bicubic_downsample, matlab_imresize
from esc_arch.errors import DatasetError, TrainingError

from basicsr.data import build_dataset  # noqa: E402  (after esc_arch, which makes basicsr importable)
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


def dataset_options(root, phase, **extra):
    options = paired_dataset(root, dict(phase=phase, scale=SCALE, gt_size=16, use_hflip=False, use_rot=False))
    return {**options, **extra}


def index_of(dataset, path):
    """Index of the pair holding ``path`` (BasicSR lists folders unsorted)."""
    return next(index for index, pair in enumerate(dataset.paths) if str(path) in pair.values())


@pytest.mark.parametrize('phase', ['train', 'val'])
@pytest.mark.parametrize('folder, content, reason', [
    ('LR', b'', 'the file is empty'),
    ('HR', b'\x89PNG\r\n\x1a\n not really', 'not a readable image'),
    ('HR', 'truncated', 'not a readable image'),
])
def test_unreadable_image_is_named(tmp_path, phase, folder, content, reason):
    root = make_pairs(tmp_path / 'pairs', count=2)
    broken = root / folder / ('img1x4.png' if folder == 'LR' else 'img1.png')
    broken.write_bytes(broken.read_bytes()[:60] if content == 'truncated' else content)
    dataset = build_dataset(dataset_options(root, phase))

    bad = index_of(dataset, broken)
    assert dataset[1 - bad]['gt'].shape[0] == 3
    with pytest.raises(DatasetError, match=re.escape(f"dataset 'pairs': cannot read {broken}: {reason}")):
        dataset[bad]


@pytest.mark.parametrize('phase', ['train', 'val'])
def test_empty_image_of_the_hr_only_dataset_is_named(tmp_path, phase):
    root = image_folder(tmp_path / 'hr', [(40, 40), (40, 40)])
    (root / 'img1.png').write_bytes(b'')
    with pytest.raises(DatasetError, match=re.escape(f'cannot decode image {root / "img1.png"} (corrupt, empty')):
        hr_only_dataset(root, phase=phase)[1]


@pytest.mark.parametrize('hr_size', [48, 20])
def test_validation_pair_of_another_scale_is_refused(tmp_path, hr_size):
    """BasicSR would crop a 48x48 HR to the 24x24 that a x4 LR of 6x6 covers, and score that corner."""
    root = make_pairs(tmp_path / 'pairs', count=2)
    hr = root / 'HR' / 'img0.png'
    cv2.imwrite(str(hr), cv2.resize(cv2.imread(str(hr)), (hr_size, hr_size)))
    dataset = build_dataset(dataset_options(root, 'val'))

    with pytest.raises(DatasetError, match=re.escape(
            f'HR {hr} is {hr_size}x{hr_size} pixels and LR {root / "LR" / "img0x4.png"} is 6x6; at scale 4 the HR '
            'must be 24x24 (up to 3 more pixels are cropped). Was the LR made for another scale?')):
        dataset[index_of(dataset, hr)]
    assert dataset[1 - index_of(dataset, hr)]['gt'].shape == (3, 24, 24)


def test_validation_keeps_hr_with_a_remainder_below_scale(tmp_path):
    root = make_pairs(tmp_path / 'pairs', count=1, size=24)
    hr = root / 'HR' / 'img0.png'
    cv2.imwrite(str(hr), cv2.copyMakeBorder(cv2.imread(str(hr)), 0, 3, 0, 2, cv2.BORDER_REFLECT))  # 26x27
    assert build_dataset(dataset_options(root, 'val'))[0]['gt'].shape == (3, 24, 24)


def test_validation_size_check_follows_exif_rotation(tmp_path):
    """OpenCV, and so BasicSR, turns a JPEG by its EXIF orientation: the HR size check must too."""
    from PIL import Image

    root = tmp_path / 'pairs'
    (root / 'HR').mkdir(parents=True)
    (root / 'LR').mkdir()
    stored = Image.fromarray(np.full((24, 48, 3), 128, np.uint8))  # 48 wide, 24 high as stored
    exif = stored.getexif()
    exif[0x0112] = 6  # displayed turned by 90 degrees: 24 wide, 48 high
    stored.save(root / 'HR' / 'img0.jpg', exif=exif)
    Image.fromarray(np.full((12, 6, 3), 128, np.uint8)).save(root / 'LR' / 'img0x4.jpg')
    assert build_dataset(dataset_options(root, 'val'))[0]['gt'].shape == (3, 48, 24)


def test_training_pair_whose_sizes_do_not_match_names_both_files(tmp_path):
    root = make_pairs(tmp_path / 'pairs', count=1)
    hr = root / 'HR' / 'img0.png'
    cv2.imwrite(str(hr), cv2.resize(cv2.imread(str(hr)), (28, 28)))
    with pytest.raises(DatasetError, match=re.escape(f'(LR {root / "LR" / "img0x4.png"}, HR {hr})')) as error:
        build_dataset(dataset_options(root, 'train'))[0]
    assert 'is not 4x multiplication of LQ (6, 6)' in str(error.value)


def test_folders_that_do_not_pair_up_are_explained(tmp_path):
    root = make_pairs(tmp_path / 'pairs', count=1)
    message = r"dataset 'pairs': img0x2.png is not in lq_paths.*filename_tmpl \"\{\}x2\""
    with pytest.raises(DatasetError, match=message):
        build_dataset(dataset_options(root, 'val', filename_tmpl='{}x2'))


@pytest.mark.parametrize('kind', ['gray', 'rgba', '16bit'])
def test_gray_rgba_and_16bit_images_are_read_as_8bit_colour(tmp_path, kind):
    """The documented conversion of BasicSR's reader: gray replicated, alpha dropped, 16 bits reduced to 8."""
    root = make_pairs(tmp_path / 'pairs', count=1)
    expected = {}
    for folder, name in (('HR', 'img0.png'), ('LR', 'img0x4.png')):
        path = root / folder / name
        image = cv2.imread(str(path))
        if kind == 'gray':
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
            cv2.imwrite(str(path), image)
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        elif kind == 'rgba':
            cv2.imwrite(str(path), np.dstack([image, np.full(image.shape[:2], 77, np.uint8)]))
        else:
            cv2.imwrite(str(path), image.astype(np.uint16) * 257)
        expected[folder] = torch.from_numpy(image[..., ::-1].transpose(2, 0, 1) / 255).float()

    item = build_dataset(dataset_options(root, 'val'))[0]
    torch.testing.assert_close(item['gt'], expected['HR'])
    torch.testing.assert_close(item['lq'], expected['LR'])


@pytest.mark.slow
def test_unreadable_training_image_in_a_dataloader_worker_is_one_line(tmp_path):
    root = make_pairs(tmp_path / 'pairs')
    (root / 'LR' / 'img1x4.png').write_bytes(b'')
    options = train_options(root, 4, model_type='ESCModel', ema_decay=0.9)
    options['datasets']['train']['num_worker_per_gpu'] = 1
    write_yaml(tmp_path / 'train.yml', options)

    returncode, output = outcome(run_basicsr(tmp_path, 'train', '-opt', 'train.yml'))
    assert_one_line_error(returncode, output, 'train', f"dataset 'pairs': cannot read {root / 'LR' / 'img1x4.png'}: "
                          'the file is empty')


def test_training_set_without_a_full_batch_is_refused_when_the_loaders_are_built():
    """For dataset types the options check cannot count (built by BasicSR, then found empty)."""
    from torch.utils.data import DataLoader

    empty = DataLoader(list(range(3)), batch_size=4, drop_last=True)
    create_loaders = basicsr_pipeline.checked_train_dataloaders(lambda opt, logger: (empty, None, [], 1, 2))
    with pytest.raises(TrainingError, match='datasets:train gives no full batch of batch_size_per_gpu 4 per epoch'):
        create_loaders({'datasets': {'train': {'batch_size_per_gpu': 4}}}, None)
