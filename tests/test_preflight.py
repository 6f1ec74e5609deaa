"""The preflight of ``basicsr train``/``test``: every missing file found before anything is created, in one message."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from esc_arch.errors import OptionsError
from esc_arch.options.preflight import check_files, missing_files

REPO_ROOT = Path(__file__).resolve().parents[1]
VGG19 = 'vgg19-dcbb9e9d.pth'


@pytest.fixture
def run_folder(tmp_path, monkeypatch):
    """An empty run folder as the current directory, with an empty torch hub cache (TORCH_HOME)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    return tmp_path


def gan_options(**path):
    """Stage-2 ESC-Real options as the release's: stage-1 weights, a VGG19 perceptual loss, a folder dataset."""
    return {'name': 'stage2', 'datasets': {'train': {'type': 'RealESRGANDataset', 'dataroot_gt': 'data/hr_sub',
                                                     'io_backend': {'type': 'disk'}}},
            'path': {'pretrain_network_g': 'experiments/stage1/models/net_g_latest.pth', **path},
            'train': {'pixel_opt': {'type': 'L1Loss'},
                      'perceptual_opt': {'type': 'PerceptualLoss', 'vgg_type': 'vgg19', 'layer_weights': {}}}}


def touch(path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b'')


def test_every_missing_file_in_one_message_with_its_source(run_folder):
    (run_folder / 'options').mkdir()
    (run_folder / 'options' / 'train_stage1.yml').write_text('name: stage1\nmodel_type: ESCRealNetModel\n')
    with pytest.raises(OptionsError) as error:
        check_files(gan_options())
    message = str(error.value)
    assert message.startswith('3 files this run needs are missing (nothing was created') and '\n' not in message
    assert 'path:pretrain_network_g not found: experiments/stage1/models/net_g_latest.pth -> written by the ' \
           'training basicsr train -opt options/train_stage1.yml' in message
    assert f'{run_folder / "torch_home" / "hub" / "checkpoints" / VGG19} -> basicsr download {VGG19}' in message
    assert 'datasets:train:dataroot_gt not found: data/hr_sub -> basicsr extract-subimages' in message


def test_one_missing_file_is_one_line(run_folder):
    with pytest.raises(OptionsError, match=r'^datasets:val:dataroot_gt not found: gone -> .*\(relative paths start'):
        check_files({'datasets': {'val': {'dataroot_gt': 'gone'}}})


def test_vgg_found_where_basicsr_looks_first_or_in_the_hub_cache(run_folder):
    options = gan_options()
    touch('experiments/stage1/models/net_g_latest.pth')
    (run_folder / 'data' / 'hr_sub').mkdir(parents=True)
    assert [file.option for file in missing_files(options)] == ['train:perceptual_opt (PerceptualLoss, vgg_type vgg19)']
    touch(run_folder / 'torch_home' / 'hub' / 'checkpoints' / VGG19)
    assert missing_files(options) == []
    os.remove(run_folder / 'torch_home' / 'hub' / 'checkpoints' / VGG19)
    touch(f'experiments/pretrained_models/{VGG19}')  # BasicSR's VGG_PRETRAIN_PATH
    check_files(options)


def test_resuming_needs_no_pretrained_weights_but_its_state(run_folder):
    options = gan_options(resume_state='experiments/stage2/training_states/100.state')
    options['train'] = {}
    (run_folder / 'data' / 'hr_sub').mkdir(parents=True)
    missing = missing_files(options, resuming=True)
    assert [file.option for file in missing] == ['path:resume_state']
    assert 'stage2' in missing[0].provided_by
    # basicsr test reads neither resume_state nor the training's losses, but needs its weights
    assert [file.option for file in missing_files(options, is_train=False)] == ['path:pretrain_network_g']


def test_release_weights_name_their_download_command(run_folder):
    options = {'path': {'pretrain_network_g': 'experiments/pretrained_models/ESC_DIV2K_X4.pth'}}
    (missing, ) = missing_files(options, is_train=False)
    assert missing.provided_by == 'basicsr download ESC_DIV2K_X4.pth'


def test_datasets_lists_and_lmdbs(run_folder):
    touch('lists/present.txt')
    datasets = {'val': {'type': 'PairedImageDataset', 'dataroot_gt': 'data/Set5/HR',
                        'dataroot_lq': 'data/Set5/LR_bicubic/X4', 'meta_info_file': 'lists/missing.txt'},
                'train': {'type': 'PairedImageDataset', 'dataroot_gt': 'data/train_HR_sub.lmdb',
                          'meta_info_file': 'lists/never_read_from_an_lmdb.txt', 'io_backend': {'type': 'lmdb'}},
                'broken': 'not a mapping'}
    missing = {file.option: file.provided_by for file in missing_files({'datasets': datasets})}
    assert list(missing) == ['datasets:val:dataroot_gt', 'datasets:val:dataroot_lq', 'datasets:val:meta_info_file',
                             'datasets:train:dataroot_gt']
    assert missing['datasets:val:dataroot_lq'].startswith('basicsr make-lr -i HR_IMAGES -o data/Set5/LR_bicubic')
    assert missing['datasets:train:dataroot_gt'].startswith('basicsr make-lmdb')


def test_pyiqa_weights_only_when_validating_and_not_downloading(run_folder):
    metrics = {'lpips': {'type': 'calculate_pyiqa', 'metric': 'lpips'},
               'niqe': {'type': 'calculate_pyiqa', 'metric': 'niqe', 'download': True},
               'psnr': {'type': 'calculate_psnr', 'crop_border': 4}}
    options = {'datasets': {'train': {'type': 'X'}}, 'val': {'metrics': metrics}}
    assert missing_files(options) == []  # no val dataset: the training never validates
    missing = missing_files(options, is_train=False)
    assert {file.option for file in missing} == {'val:metrics:lpips (pyiqa lpips)'}
    assert all(str(run_folder / 'torch_home') in file.path for file in missing)


@pytest.mark.slow
def test_basicsr_train_without_vgg_stops_before_creating_anything(tmp_path):
    """The release's stage-2 ESC-Real options without VGG19: one message, exit code 2, no experiments folder."""
    env = {**os.environ, 'TORCH_HOME': str(tmp_path / 'torch_home'), 'PYTHONPATH': str(REPO_ROOT)}
    result = subprocess.run([sys.executable, '-m', 'esc_arch.cli', 'train', '-opt',
                             str(REPO_ROOT / 'options' / 'train' / 'train_ESC_Real_x4_GAN.yml')],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.count('error:') == 1 and 'Traceback' not in result.stderr
    assert f'basicsr download {VGG19}' in result.stderr
    assert 'path:pretrain_network_g' in result.stderr and 'datasets:train:dataroot_gt' in result.stderr
    assert not (tmp_path / 'experiments').exists() and not (tmp_path / 'tb_logger').exists()
