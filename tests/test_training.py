"""End to end through ``basicsr test/train`` on the benchmark data in ../shared/datasets.

* the evaluation protocol: the committed Bicubic x4 test options reproduce the MATLAB-bicubic
  baselines (``BICUBIC_PSNR_X4``) on Set5, Set14 and B100 to 0.01 dB (x2 and x3: tests/test_datasets.py);
* a short real training of a small ESC on B100 HR crops (HR-only dataset, LR made on the fly) beats
  bicubic on Set5 x4, resumes from its saved state and saves the EMA weights as ``params_ema``.
"""
import re
from pathlib import Path

import pytest
import torch
from helpers import basicsr_succeeds, committed_options, write_yaml  # noqa: E402

import esc_arch  # noqa: F401

from basicsr.data import build_dataloader, build_dataset  # noqa: E402  (after esc_arch: makes basicsr importable)
from basicsr.models import build_model  # noqa: E402

# PSNR-Y of MATLAB bicubic x4, the SR papers' baseline (BasicSR reads Set14's grayscale bridge.png as 3 channels).
BICUBIC_PSNR_X4 = {'Set5': 28.43, 'Set14': 26.09, 'B100': 25.96}
SMALL_ESC = dict(type='ESC', dim=32, pdim=8, kernel_size=7, n_blocks=2, conv_blocks=2, window_size=8, num_heads=2,
                 upscaling_factor=4)


def logged_metric(output, dataset, metric='psnr'):
    """The last value of ``metric`` that BasicSR logged for ``dataset``."""
    values = re.findall(rf'Validation {dataset}\n(?:\t # \w+: [\d.]+.*\n)*?\t # {metric}: ([\d.]+)', output)
    assert values, f'no {metric} logged for {dataset}'
    return float(values[-1])


def set5_x4_psnr(datasets_dir, checkpoint, **val):
    """Set5 x4 PSNR-Y of the EMA weights in ``checkpoint``, computed by ESCModel's validation."""
    model = build_model(dict(name='set5', model_type='ESCModel', scale=4, num_gpu=0, is_train=False, dist=False,
                             network_g=SMALL_ESC,
                             path=dict(pretrain_network_g=str(checkpoint), param_key_g='params_ema',
                                       strict_load_g=True),
                             val=dict(val, metrics=dict(psnr=dict(type='calculate_psnr', crop_border=4,
                                                                  test_y_channel=True)))))
    dataset_opt = dict(name='Set5', type='PairedImageDataset', dataroot_gt=str(datasets_dir / 'Set5' / 'HR'),
                       dataroot_lq=str(datasets_dir / 'Set5' / 'LR_bicubic' / 'X4'), filename_tmpl='{}x4',
                       io_backend=dict(type='disk'), phase='val', scale=4)
    loader = build_dataloader(build_dataset(dataset_opt), dataset_opt, num_gpu=0, dist=False)
    model.nondist_validation(loader, current_iter=0, tb_logger=None, save_img=False)
    return model.metric_results['psnr']


@pytest.mark.slow
def test_bicubic_test_options_reproduce_the_bicubic_baselines(tmp_path, datasets_dir):
    options = committed_options('test/test_Bicubic_x4.yml')
    expected = BICUBIC_PSNR_X4
    options['datasets'] = {key: dataset for key, dataset in options['datasets'].items() if dataset['name'] in expected}
    for dataset in options['datasets'].values():  # the committed relative paths, rooted at ../shared/datasets
        for key in ('dataroot_gt', 'dataroot_lq'):
            dataset[key] = str(datasets_dir / Path(dataset[key]).relative_to('datasets'))
    write_yaml(tmp_path / 'test.yml', options)

    output = basicsr_succeeds(tmp_path, 'test', '-opt', 'test.yml', timeout=900)
    for name, psnr in expected.items():
        assert logged_metric(output, name) == pytest.approx(psnr, abs=0.01), name
        assert 0 < logged_metric(output, name, 'ssim') < 1


@pytest.mark.slow
def test_short_training_beats_bicubic_and_resumes(tmp_path, datasets_dir):
    options = dict(
        name='small_esc_x4', model_type='ESCModel', scale=4, num_gpu=0, manual_seed=0,
        datasets=dict(
            train=dict(name='B100', type='HROnlyBicubicDataset', dataroot_gt=str(datasets_dir / 'B100' / 'HR'),
                       io_backend=dict(type='disk'), gt_size=128, use_hflip=True, use_rot=True, num_worker_per_gpu=0,
                       batch_size_per_gpu=8),
            val=dict(name='Set5', type='PairedImageDataset', dataroot_gt=str(datasets_dir / 'Set5' / 'HR'),
                     dataroot_lq=str(datasets_dir / 'Set5' / 'LR_bicubic' / 'X4'), filename_tmpl='{}x4',
                     io_backend=dict(type='disk'))),
        network_g=SMALL_ESC,
        path=dict(pretrain_network_g=None, strict_load_g=True, resume_state=None),
        train=dict(ema_decay=0.9, optim_g=dict(type='AdamW', lr=2e-3, betas=[0.9, 0.9], weight_decay=0),
                   scheduler=dict(type='MultiStepLR', milestones=[1000], gamma=0.5), total_iter=100, warmup_iter=-1,
                   pixel_opt=dict(type='L1Loss', loss_weight=1.0, reduction='mean')),
        val=dict(val_freq=1000, save_img=False,  # validated once, at the end of each run
                 metrics=dict(psnr=dict(type='calculate_psnr', crop_border=4, test_y_channel=True))),
        logger=dict(print_freq=50, save_checkpoint_freq=50, use_tb_logger=False))
    write_yaml(tmp_path / 'train.yml', options)
    experiment = tmp_path / 'experiments' / options['name']

    first = basicsr_succeeds(tmp_path, 'train', '-opt', 'train.yml', timeout=900)
    assert sorted(path.name for path in (experiment / 'training_states').iterdir()) == ['100.state', '50.state']
    resumed = basicsr_succeeds(tmp_path, 'train', '-opt', 'train.yml', '--auto_resume', '--force_yml',
                               'train:total_iter=150', timeout=900)
    assert 'Resuming training from epoch: ' in resumed and re.search(r'Start training from epoch: \d+, iter: 100\n',
                                                                      resumed)
    assert re.search(r'iter:\s+150,', resumed) and not re.search(r'iter:\s+50,', resumed)
    assert logged_metric(resumed, 'Set5') > BICUBIC_PSNR_X4['Set5'] + 0.2  # measured: about 29.0 dB
    assert logged_metric(resumed, 'Set5') > logged_metric(first, 'Set5') - 0.1

    checkpoint = torch.load(experiment / 'models' / 'net_g_150.pth')
    assert set(checkpoint) == {'params', 'params_ema'}
    assert any(not torch.equal(checkpoint['params'][name], value) for name, value in checkpoint['params_ema'].items())

    # tiled evaluation (tiles of 24 LR pixels, several per image) scores as the whole-image one
    whole = set5_x4_psnr(datasets_dir, experiment / 'models' / 'net_g_150.pth')
    assert whole == pytest.approx(logged_metric(resumed, 'Set5'), abs=1e-4)
    tiled = set5_x4_psnr(datasets_dir, experiment / 'models' / 'net_g_150.pth', tile_size=24, tile_pad=16)
    assert tiled == pytest.approx(whole, abs=0.05)
