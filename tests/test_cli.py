"""The ``basicsr`` console script: dispatch, BasicSR train/resume/test on CPU, one-line user errors."""
import glob
import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import SCALE, TINY_ESC, make_pairs, paired_dataset, run_basicsr, train_options, write_yaml

from esc_arch import ESC
from esc_arch.cli import COMMANDS, main


def test_every_command_module_has_the_interface():
    import importlib

    for name, (module_name, summary) in COMMANDS.items():
        module = importlib.import_module(module_name)
        assert callable(module.add_arguments) and callable(module.run), name
        assert summary and '\n' not in summary


@pytest.mark.slow
def test_console_script_help_lists_commands(tmp_path):
    result = run_basicsr(tmp_path, '--help')
    assert result.returncode == 0, result.stdout
    for name in COMMANDS:
        assert re.search(rf'^\s+{re.escape(name)}\s', result.stdout, re.MULTILINE), name
    assert not list(tmp_path.iterdir())  # --help creates nothing


@pytest.mark.slow
def test_train_writes_a_checkpoint_and_auto_resume_continues(tmp_path):
    data = make_pairs(tmp_path / 'pairs')
    options = write_yaml(tmp_path / 'train.yml', train_options(data, total_iter=4))

    first = run_basicsr(tmp_path, 'train', '-opt', options)
    assert first.returncode == 0, first.stdout[-3000:]
    experiment = tmp_path / 'experiments' / 'tiny_esc'  # under the working directory
    assert (experiment / 'training_states' / '4.state').is_file()
    checkpoint = torch.load(experiment / 'models' / 'net_g_4.pth', map_location='cpu')
    assert set(checkpoint) == {'params', 'params_ema'}
    ESC(**{k: v for k, v in TINY_ESC.items() if k != 'type'}).load_state_dict(checkpoint['params'])

    resumed = run_basicsr(tmp_path, 'train', '-opt', options, '--auto_resume', '--force_yml', 'train:total_iter=6')
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    logs = sorted(glob.glob(str(experiment / 'train_tiny_esc_*.log')))
    resumed_log = Path(logs[-1]).read_text()
    assert 'Resuming training from epoch' in resumed_log and 'iter: 4.' in resumed_log
    iterations = [int(value) for value in re.findall(r'iter:\s+(\d+), lr', resumed_log)]
    assert iterations == [5, 6]
    assert (experiment / 'models' / 'net_g_6.pth').is_file()
    assert (experiment / 'training_states' / '6.state').is_file()


@pytest.mark.slow
def test_test_logs_psnr_and_ssim_of_the_saved_images(tmp_path):
    from basicsr.metrics import calculate_psnr

    data = make_pairs(tmp_path / 'pairs', count=2, size=36)
    weights = tmp_path / 'tiny.pth'
    network = ESC(**{k: v for k, v in TINY_ESC.items() if k != 'type'})
    torch.save({'params': network.state_dict()}, weights)
    metrics = {name: dict(type=f'calculate_{name}', crop_border=SCALE, test_y_channel=True)
               for name in ('psnr', 'ssim')}
    options = write_yaml(tmp_path / 'test.yml', dict(
        name='tiny_test', model_type='SRModel', scale=SCALE, num_gpu=0, manual_seed=0,
        datasets=dict(test_1=paired_dataset(data, {})), network_g=dict(TINY_ESC),
        path=dict(pretrain_network_g=str(weights), param_key_g='params', strict_load_g=True),
        val=dict(save_img=True, suffix='sr', metrics=metrics)))

    result = run_basicsr(tmp_path, 'test', '-opt', options)
    assert result.returncode == 0, result.stdout[-3000:]
    results = tmp_path / 'results' / 'tiny_test'
    log = Path(glob.glob(str(results / 'test_tiny_test_*.log'))[0]).read_text()
    logged = {name: float(value) for name, value in re.findall(r'# (psnr|ssim): ([-\d.]+)', log)}
    assert set(logged) == {'psnr', 'ssim'}
    assert 0 < logged['ssim'] <= 1
    psnr = np.mean([
        calculate_psnr(cv2.imread(str(results / 'visualization' / 'pairs' / f'img{index}x4_sr.png')),
                       cv2.imread(str(data / 'HR' / f'img{index}.png')), crop_border=SCALE, test_y_channel=True)
        for index in range(2)])
    assert logged['psnr'] == pytest.approx(psnr, abs=1e-3)


@pytest.mark.parametrize('arguments, message', [
    (['train', '-opt', 'missing.yml'], 'options file not found: missing.yml'),
    (['test', '-opt', 'broken.yml'], 'cannot read broken.yml as YAML'),
    (['train', '-opt', 'incomplete.yml'], 'incomplete.yml lacks required option(s): train, logger'),
    (['train', '-opt', 'listed.yml'], 'listed.yml is not a BasicSR options file'),
    (['test', '-opt', 'incomplete.yml', '--force_yml', 'name=y'], 'incomplete.yml lacks required option(s): val'),
    (['test', '-opt', 'testable.yml', '--force_yml', 'nothere:lr=1'], 'testable.yml has no option nothere'),
    (['test', '-opt', 'testable.yml', '--force_yml', 'name'], 'is not of the form KEY:SUBKEY=VALUE'),
    (['test', '-opt', 'testable.yml', '--force_yml', 'path:pretrain_network_g=gone.pth'], 'gone.pth'),
    (['train', '-opt', 'trainable.yml', '--force_yml', 'path:resume_state=gone.state'], 'gone.state'),
])
def test_user_errors_are_one_line_with_exit_code_2(tmp_path, monkeypatch, capsys, arguments, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'broken.yml').write_text('name: [unclosed\n')
    (tmp_path / 'listed.yml').write_text('- a\n- b\n')
    incomplete = dict(name='x', model_type='SRModel', num_gpu=0, datasets={}, path={})
    write_yaml(tmp_path / 'incomplete.yml', incomplete)
    write_yaml(tmp_path / 'testable.yml', dict(incomplete, val={}))
    write_yaml(tmp_path / 'trainable.yml', dict(incomplete, train={}, logger={}))

    assert main(arguments) == 2
    error = capsys.readouterr().err
    assert error.count('\n') == 1 and error.startswith(f'basicsr {arguments[0]}: error: ')
    assert message in error
    assert sorted(os.listdir(tmp_path)) == sorted(
        ['broken.yml', 'incomplete.yml', 'listed.yml', 'testable.yml', 'trainable.yml'])


def test_missing_dataset_folder_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    options = train_options(tmp_path / 'nowhere', total_iter=2)
    write_yaml(tmp_path / 'train.yml', options)

    assert main(['train', '-opt', 'train.yml']) == 2
    error = capsys.readouterr().err
    assert error.startswith('basicsr train: error: 2 files this run needs are missing') and 'nowhere' in error
    assert 'datasets:train:dataroot_gt not found: ' in error and 'datasets:train:dataroot_lq not found: ' in error
    assert error.count('\n') == 1
    assert os.listdir(tmp_path) == ['train.yml']  # refused before BasicSR made any folder

    # --force_yml overrides are applied before the check
    make_pairs(tmp_path / 'nowhere')
    assert main(['train', '-opt', 'train.yml', '--force_yml', 'datasets:train:dataroot_lq=elsewhere']) == 2
    assert 'datasets:train:dataroot_lq not found: elsewhere' in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ['nowhere', 'train.yml']


def test_unknown_command_and_no_command_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(['fly'])
    assert exit_info.value.code == 2
    assert main([]) == 2
    assert 'COMMAND' in capsys.readouterr().err


def test_export_onnx_reports_missing_weights_when_the_output_exists(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'model.onnx').write_bytes(b'previous export')
    assert main(['export-onnx', '--model', 'ESC-light', '--weights', 'gone.pth', '-o', 'model.onnx']) == 2
    error = capsys.readouterr().err
    assert error == 'basicsr export-onnx: error: checkpoint not found: gone.pth\n'
    assert (tmp_path / 'model.onnx').read_bytes() == b'previous export'


@pytest.mark.parametrize('command', [['upscale', '--model', 'ESC', '--weights', 'x.pth', '-i', 'a.png', '-o', 'out'],
                                     ['make-lr', '-i', 'in', '-o', 'out'],
                                     ['extract-subimages', '-i', 'in', '-o', 'out'],
                                     ['export-onnx', '--model', 'ESC', '-o', 'x.onnx']])
def test_scale_0_is_refused(tmp_path, monkeypatch, capsys, command):
    monkeypatch.chdir(tmp_path)
    try:
        code = main([*command, '--scale', '0'])
    except SystemExit as exit_:  # refused by argparse
        code = exit_.code
    error = capsys.readouterr().err
    assert code == 2 and '--scale' in error and 'must be at least' in error and 'Traceback' not in error, error
    assert os.listdir(tmp_path) == []
