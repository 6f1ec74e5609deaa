"""Reliability: bad options, images and checkpoints are reported in one clear line; interrupted training loses nothing.

Errors found before BasicSR starts are checked in-process through the ``basicsr`` dispatcher; errors raised
inside BasicSR's pipelines and the interruption tests run the ``basicsr`` console script as a subprocess.
"""
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import (  # noqa: E402
    SCALE,
    TINY,
    TINY_ESC,
    RunsCode,
    batch,
    console_script,
    hr_only_dataset,
    image_folder,
    make_pairs,
    model_options,
    paired_dataset,
    run_basicsr,
    train_options,
    train_step,
    weights,
    write_yaml,
)

from esc_arch import ESC, ESCFP
from esc_arch.cli import main
from esc_arch.compat.resume import latest_training_state
from esc_arch.errors import CheckpointError, DatasetError, NonFiniteLossError
from esc_arch.models.esc_model import save_atomically
from esc_arch.options import check_options
from esc_arch.runs import stop_signals as stop_on_signal

from basicsr.data import build_dataset  # noqa: E402  (after esc_arch, which makes basicsr importable)
from basicsr.models import build_model  # noqa: E402

WAIT_SECONDS = 300


def esc_train_options(data_root, total_iter, **train):
    """A tiny ESCModel training (EMA 0.9) on ``data_root`` pairs; ``train`` updates the ``train`` section."""
    options = train_options(data_root, total_iter)
    options['model_type'] = 'ESCModel'
    options['train'].update(ema_decay=0.9, **train)
    return options


def start_basicsr(cwd, *arguments):
    """Start the console script in its own process group, output to ``cwd/output.txt``."""
    output = open(cwd / 'output.txt', 'w')
    process = subprocess.Popen([console_script(), *arguments], cwd=cwd, stdout=output, stderr=subprocess.STDOUT,
                               start_new_session=True, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    output.close()
    return process


def wait_for(condition, process, what):
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert process.poll() is None, f'training ended before {what}'
        assert time.monotonic() < deadline, f'timed out waiting for {what}'
        time.sleep(0.05)


def outcome(result):
    """The exit code and the output (stdout and stderr together) of a :func:`run_basicsr` result."""
    return result.returncode, result.stdout


def assert_one_line_error(returncode, output, command, message):
    """Exit code 2, the error as the last line, and no traceback."""
    assert returncode == 2, output[-3000:]
    assert 'Traceback' not in output, output[-3000:]
    last_line = output.strip().splitlines()[-1]
    assert last_line.startswith(f'basicsr {command}: error: ') and message in last_line, last_line


# ---------------------------------------------------------------- options, before anything is built


def _misspell(key, wrong):
    return lambda options, root: options['network_g'].update({wrong: options['network_g'].pop(key)})


def _lmdb_dataset(folder_name):

    def modify(options, root):
        (root / folder_name).mkdir()
        options['datasets']['train'].update(dataroot_gt=str(root / folder_name), io_backend={'type': 'lmdb'})

    return modify


def _empty_folder(options, root):
    (root / 'no_images').mkdir()
    options['datasets']['train']['dataroot_gt'] = str(root / 'no_images')


@pytest.mark.parametrize('modify, message', [
    (_misspell('num_heads', 'num_head'), 'network_g:num_head is not an option of ESC (did you mean "num_heads"?); '
     'its options are: dim, pdim, kernel_size, n_blocks, conv_blocks, window_size, num_heads, upscaling_factor'),
    (lambda options, root: options['network_g'].update(type='ESc'),
     'network_g:type: no arch type named "ESc" is registered; did you mean "ESC"?'),
    (lambda options, root: options['network_g'].update(pdim=32), 'network_g (ESC): pdim (32) must not exceed dim (16)'),
    (lambda options, root: options.update(model_type='ESCModle'), 'did you mean "ESCModel"?'),
    (lambda options, root: options.update(scale=2), 'scale is 2 but network_g:upscaling_factor is 4'),
    (lambda options, root: (options.update(scale=3), options['network_g'].pop('upscaling_factor')),
     'scale is 3 but network_g:upscaling_factor is 4, the default of ESC'),
    (lambda options, root: options.pop('scale'), 'scale is missing; network_g:upscaling_factor is 4'),
    (lambda options, root: options['datasets']['train'].update(dataroot_lq='no/such/folder'),
     'datasets:train:dataroot_lq not found: no/such/folder'),
    (_empty_folder, '/no_images is empty'),
    (_lmdb_dataset('train_HR.lmdb'), 'train_HR.lmdb is not a complete BasicSR LMDB (no data.mdb)'),
    (_lmdb_dataset('train_HR'), 'BasicSR LMDB folders are named *.lmdb'),
    (lambda options, root: options['datasets'].update(test=dict(options['datasets']['train'])),
     'datasets:test: basicsr train uses only the datasets "train" and "val"'),
    (lambda options, root: options['path'].update(pretrain_network_g='no_such.pth'),
     'path:pretrain_network_g not found: no_such.pth'),
], ids=['misspelled-key', 'unknown-type', 'invalid-value', 'unknown-model', 'scale', 'default-scale', 'no-scale',
        'missing-folder', 'empty-folder', 'incomplete-lmdb', 'lmdb-name', 'unused-dataset', 'missing-pretrained'])
def test_bad_training_options_are_one_line_before_anything_is_written(tmp_path, monkeypatch, capsys, modify,
                                                                       message):
    monkeypatch.chdir(tmp_path)
    options = esc_train_options(make_pairs(tmp_path / 'pairs'), total_iter=2)
    modify(options, tmp_path)
    write_yaml(tmp_path / 'train.yml', options)
    before = sorted(os.listdir(tmp_path))

    assert main(['train', '-opt', 'train.yml']) == 2
    error = capsys.readouterr().err
    assert error.startswith('basicsr train: error: ') and error.count('\n') == 1, error
    assert message in error
    assert sorted(os.listdir(tmp_path)) == before  # no experiments/ folder, nothing archived


def test_test_command_checks_its_datasets(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    dataset = paired_dataset(make_pairs(tmp_path / 'pairs'), {})
    options = dict(name='check', model_type='ESCModel', scale=SCALE, num_gpu=0, network_g=dict(TINY_ESC),
                   datasets=dict(test_1=dict(dataset, dataroot_gt='missing/HR')), path={}, val={})
    write_yaml(tmp_path / 'test.yml', options)
    assert main(['test', '-opt', 'test.yml']) == 2
    # the only set is missing: none is left to run (a set among others would be skipped with a notice)
    assert ('basicsr test: error: no test set is left to run (datasets:test_1:dataroot_gt not found: missing/HR'
            in capsys.readouterr().err)
    assert not (tmp_path / 'results').exists()


def test_pretrained_path_is_not_required_when_resuming(tmp_path):
    options = esc_train_options(make_pairs(tmp_path / 'pairs'), total_iter=2)
    options['path']['pretrain_network_g'] = str(tmp_path / 'moved_away.pth')
    check_options(options, resuming=True)  # BasicSR loads the experiment's own checkpoint instead


# ---------------------------------------------------------------- images


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


def test_upscale_names_an_unreadable_file_and_upscales_the_others(tmp_path, capsys):
    """One bad file fails alone: it is named, the others are written and the exit code is 1."""
    inputs = image_folder(tmp_path / 'in', [(10, 12)])
    (inputs / 'empty.png').write_bytes(b'')
    torch.save({'params': ESC(**TINY).state_dict()}, tmp_path / 'tiny.pth')
    write_yaml(tmp_path / 'tiny.yml', {'network_g': dict(TINY_ESC)})

    assert main(['upscale', '-i', str(inputs), '-o', str(tmp_path / 'out'), '--model', str(tmp_path / 'tiny.yml'),
                 '--weights', str(tmp_path / 'tiny.pth')]) == 1
    error = capsys.readouterr().err
    assert error == f'basicsr upscale: error: cannot decode image {inputs / "empty.png"} (empty, corrupt or not an ' \
                    'image)\n'
    assert [path.name for path in (tmp_path / 'out').iterdir()] == ['img0.png']
    assert cv2.imread(str(tmp_path / 'out' / 'img0.png')).shape == (10 * SCALE, 12 * SCALE, 3)


# ---------------------------------------------------------------- checkpoints


@pytest.mark.parametrize('is_train', [False, True])
def test_checkpoint_that_runs_code_is_refused_by_the_model(tmp_path, is_train):
    marker = tmp_path / 'code_ran'
    torch.save({'params': ESC(**TINY).state_dict(), 'extra': RunsCode(marker)}, tmp_path / 'evil.pth')
    with pytest.raises(CheckpointError, match='refused: loading it would run arbitrary code'):
        build_model(model_options(tmp_path, is_train=is_train, pretrain=tmp_path / 'evil.pth'))
    assert not marker.exists()


@pytest.mark.parametrize('network, difference', [
    (ESCFP(**TINY), 'type=ESCFP (network: ESC)'),
    (ESC(**{**TINY, 'dim': 24}), 'dim=24 (network: 16)'),
])
def test_checkpoint_of_another_architecture_is_explained(tmp_path, network, difference):
    torch.save({'params': network.state_dict()}, tmp_path / 'other.pth')
    with pytest.raises(CheckpointError, match=re.escape(difference)) as error:
        build_model(model_options(tmp_path, is_train=False, pretrain=tmp_path / 'other.pth'))
    assert f'{tmp_path / "other.pth"} does not fit the network' in str(error.value)


@pytest.mark.slow
def test_refused_checkpoint_in_basicsr_test_is_one_line(tmp_path):
    marker = tmp_path / 'code_ran'
    torch.save({'params': ESC(**TINY).state_dict(), 'extra': RunsCode(marker)}, tmp_path / 'evil.pth')
    write_yaml(tmp_path / 'test.yml', dict(
        name='evil', model_type='ESCModel', scale=SCALE, num_gpu=0, network_g=dict(TINY_ESC), val={},
        datasets=dict(test_1=paired_dataset(make_pairs(tmp_path / 'pairs', count=1), {})),
        path=dict(pretrain_network_g=str(tmp_path / 'evil.pth'))))

    returncode, output = outcome(run_basicsr(tmp_path, 'test', '-opt', 'test.yml'))
    assert_one_line_error(returncode, output, 'test', f'{tmp_path / "evil.pth"} was refused: loading it would run '
                          'arbitrary code (it contains io.open)')
    assert not marker.exists()


@pytest.mark.slow
def test_unreadable_training_image_in_a_dataloader_worker_is_one_line(tmp_path):
    root = make_pairs(tmp_path / 'pairs')
    (root / 'LR' / 'img1x4.png').write_bytes(b'')
    options = esc_train_options(root, total_iter=4)
    options['datasets']['train']['num_worker_per_gpu'] = 1
    write_yaml(tmp_path / 'train.yml', options)

    returncode, output = outcome(run_basicsr(tmp_path, 'train', '-opt', 'train.yml'))
    assert_one_line_error(returncode, output, 'train', f"dataset 'pairs': cannot read {root / 'LR' / 'img1x4.png'}: "
                          'the file is empty')


# ---------------------------------------------------------------- non-finite losses


def test_non_finite_loss_skips_the_step_and_stops_after_n_in_a_row(tmp_path):
    model = build_model(model_options(tmp_path, max_consecutive_nonfinite=3))
    good = batch()
    bad = {'lq': good['lq'] * float('nan'), 'gt': good['gt']}
    before, ema_before = weights(model.net_g), weights(model.net_g_ema)

    train_step(model, 1, bad)
    train_step(model, 2, bad)
    assert model.nonfinite_in_a_row == 2
    assert all(torch.equal(before[name], value) for name, value in weights(model.net_g).items())
    assert all(torch.equal(ema_before[name], value) for name, value in weights(model.net_g_ema).items())
    assert not model.optimizer_g.state  # no optimizer step either

    train_step(model, 3, good)  # a finite step trains and resets the count
    assert model.nonfinite_in_a_row == 0 and model.optimizer_g.state
    train_step(model, 4, bad)
    train_step(model, 5, bad)
    with pytest.raises(NonFiniteLossError, match=r'^3 training steps in a row had a non-finite loss \(last at '
                       r'iteration 6\); stopping\. Lower the learning rate'):
        train_step(model, 6, bad)


@pytest.mark.slow
def test_diverged_training_stops_with_one_line(tmp_path):
    options = esc_train_options(make_pairs(tmp_path / 'pairs'), total_iter=20, max_consecutive_nonfinite=3)
    options['train']['pixel_opt']['loss_weight'] = float('nan')
    write_yaml(tmp_path / 'train.yml', options)

    returncode, output = outcome(run_basicsr(tmp_path, 'train', '-opt', 'train.yml'))
    assert_one_line_error(returncode, output, 'train', '3 training steps in a row had a non-finite loss (last at '
                          'iteration 3); stopping.')


# ---------------------------------------------------------------- interruption and resuming


def logged_iterations(log):
    """``{iteration: learning rate}`` from BasicSR's training log lines."""
    return {int(it): float(lr) for _, it, lr in logged_epoch_iteration_lr(log)}


def logged_epoch_iteration_lr(log):
    return re.findall(r'epoch:\s*(\d+), iter:\s*(\d+), lr:\(([-\d.e+]+),\)', log)


@pytest.mark.slow
def test_killed_training_resumes_with_iteration_lr_and_ema(tmp_path):
    """SIGKILL after a checkpoint; --auto_resume continues the iteration count, the LR schedule and the EMA."""
    options = esc_train_options(make_pairs(tmp_path / 'pairs'), total_iter=1000,
                                scheduler=dict(type='MultiStepLR', milestones=[3], gamma=0.5))
    write_yaml(tmp_path / 'train.yml', options)
    experiment = tmp_path / 'experiments' / options['name']
    process = start_basicsr(tmp_path, 'train', '-opt', 'train.yml')
    try:
        wait_for(lambda: (experiment / 'training_states' / '4.state').is_file(), process, 'the state of iteration 4')
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    saved = int(Path(latest_training_state(str(experiment / 'training_states'))).stem)

    returncode, output = outcome(run_basicsr(tmp_path, 'train', '-opt', 'train.yml', '--auto_resume', '--force_yml',
                                             f'train:total_iter={saved + 1}'))
    assert returncode == 0, output[-3000:]
    assert re.search(rf'Resuming training from epoch: \d+, iter: {saved}\.', output)
    assert logged_iterations(output) == {saved + 1: 5e-4}  # after the milestone at 3, as scheduled
    checkpoint = torch.load(experiment / 'models' / f'net_g_{saved}.pth')
    latest = torch.load(experiment / 'models' / 'net_g_latest.pth')
    for name, ema in latest['params_ema'].items():  # one EMA update (decay 0.9) from the saved EMA
        torch.testing.assert_close(ema, 0.9 * checkpoint['params_ema'][name] + 0.1 * latest['params'][name])


@pytest.mark.slow
def test_sigterm_saves_the_current_iteration_and_stops(tmp_path):
    """Preemption: SIGTERM to the whole process group (DataLoader worker included) saves a state, exit 130."""
    options = esc_train_options(make_pairs(tmp_path / 'pairs'), total_iter=1000)
    options['datasets']['train']['num_worker_per_gpu'] = 1
    options['logger']['save_checkpoint_freq'] = 1000
    write_yaml(tmp_path / 'train.yml', options)
    experiment = tmp_path / 'experiments' / options['name']
    process = start_basicsr(tmp_path, 'train', '-opt', 'train.yml')
    try:
        wait_for(lambda: 2 in logged_iterations((tmp_path / 'output.txt').read_text()), process, 'iteration 2')
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(WAIT_SECONDS)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    output = (tmp_path / 'output.txt').read_text()

    assert process.returncode == 130, output[-3000:]
    assert 'Traceback' not in output and 'exited unexpectedly' not in output, output[-3000:]
    assert output.strip().splitlines()[-1] == 'basicsr train: interrupted'
    epoch, stopped = (int(value) for value in logged_epoch_iteration_lr(output)[-1][:2])
    assert f'networks and training state of iteration {stopped} saved; continue with --auto_resume' in output
    state = torch.load(experiment / 'training_states' / f'{stopped}.state')
    assert state['iter'] == stopped and stopped >= 2
    assert state['epoch'] in (epoch, epoch + 1)  # the next epoch when the signal came at an epoch's end
    assert set(torch.load(experiment / 'models' / f'net_g_{stopped}.pth')) == {'params', 'params_ema'}


def test_stop_signal_handler_waits_for_the_training_loop_then_a_second_signal_stops_at_once():
    from esc_arch.compat import patched, patches_for

    import basicsr.data

    handlers = {signum: signal.getsignal(signum) for signum in stop_on_signal.STOP_SIGNALS}
    with patched(*patches_for('train')), stop_on_signal.save_on_stop_signals():  # as basicsr train
        assert basicsr.data.worker_init_fn is stop_on_signal.worker_init_ignoring_stop_signals
        with pytest.raises(KeyboardInterrupt):  # before training starts: stop at once
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        stop_on_signal._stop['training'] = True
        os.kill(os.getpid(), signal.SIGTERM)  # recorded for the model to act on
        assert stop_on_signal._stop['signal'] == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert {signum: signal.getsignal(signum) for signum in stop_on_signal.STOP_SIGNALS} == handlers
    assert basicsr.data.worker_init_fn is stop_on_signal.basicsr_worker_init_fn
    assert stop_on_signal._stop == {'signal': None, 'training': False, 'pid': None, 'sampler': None}


def test_interrupted_save_leaves_the_previous_state_usable(tmp_path, monkeypatch):
    states = tmp_path / 'training_states'
    states.mkdir()
    save_atomically({'iter': 2}, states / '2.state')

    def interrupted_save(obj, stream):
        stream.write(b'half a state')
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(torch, 'save', interrupted_save)
        with pytest.raises(KeyboardInterrupt):
            save_atomically({'iter': 4}, states / '2.state')
        with pytest.raises(KeyboardInterrupt):
            save_atomically({'iter': 4}, states / '4.state')
    assert sorted(os.listdir(states)) == ['2.state']
    assert torch.load(states / '2.state') == {'iter': 2}
    # A SIGKILL leaves the temporary file behind; resuming ignores it.
    (states / '.4.state.12345.tmp').write_bytes(b'half a state')
    assert latest_training_state(str(states)) == str(states / '2.state')
