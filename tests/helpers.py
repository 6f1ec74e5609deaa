"""Helpers shared by the test modules: tiny networks, options, images, datasets, training steps, the ``basicsr`` script.

conftest.py imports esc_arch (so that basicsr is importable) before any test module.
"""
import os
import re
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from esc_arch import ESC, ESCFP, ESCReal
from esc_arch.cli import main
from esc_arch.data import HROnlyBicubicDataset, bicubic_downsample

REPO_ROOT = Path(__file__).resolve().parents[1]
OPTIONS_DIR = REPO_ROOT / 'options'
SCALE = 4
# THE tiny configuration: a network small enough for CPU tests that still has every kind of layer
# (conv_blocks=2: a block with more than one ConvAttn layer, and so a kernel shared between layers).
TINY = dict(dim=16, pdim=8, kernel_size=5, n_blocks=1, conv_blocks=2, window_size=8, num_heads=2)
TINY_ESC = dict(type='ESC', **TINY, upscaling_factor=SCALE)
# The tiny ESC-LTE (arbitrary scale): TINY's trunk with a small implicit decoder.
TINY_LTE = dict(TINY, hidden_dim=16, mlp_hidden=[16, 16])


class RunsCode:
    """Unpickling this calls ``open(path, 'w')``: a checkpoint that executes code when loaded."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, 'w')


def perturbed(network, std=0.05):
    """``network`` with every parameter moved off its initial value, so that every path acts.

    ESC zero-initialises its dynamic kernels: untouched, they would hide errors in that path.
    """
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(torch.randn_like(parameter) * std)
    return network


def console_script():
    """The installed ``basicsr`` script of the running environment."""
    script = Path(sys.executable).with_name('basicsr')
    if not script.is_file():
        pytest.fail(f'{script} is missing: install the package (pip install -e .) before running the tests')
    return str(script)


def run_basicsr(cwd, *arguments, timeout=600):
    """Run the installed ``basicsr`` script in ``cwd`` with one torch thread.

    Returns:
        subprocess.CompletedProcess: ``stdout`` holds stdout and stderr together, in the order written.
    """
    return subprocess.run([console_script(), *arguments], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout, env={**os.environ, 'OMP_NUM_THREADS': '1'})


def basicsr_succeeds(cwd, *arguments, timeout=600):
    """Run the installed ``basicsr`` script as :func:`run_basicsr` does; fail the test unless it exits with 0.

    Returns:
        str: What it wrote to stdout and stderr.
    """
    result = run_basicsr(cwd, *arguments, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:]
    return result.stdout


def make_pairs(root, count=3, size=24, seed=0):
    """``root/HR/img{i}.png`` and their MATLAB-bicubic ``root/LR/img{i}x4.png``."""
    rng = np.random.default_rng(seed)
    (root / 'HR').mkdir(parents=True)
    (root / 'LR').mkdir()
    for index in range(count):
        # smooth random images, so that SR has something to learn and PSNR is finite
        hr = cv2.resize(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8), (size, size), interpolation=cv2.INTER_CUBIC)
        lr = np.clip(np.floor(bicubic_downsample(hr, SCALE) * 255 + 0.5), 0, 255).astype(np.uint8)
        cv2.imwrite(str(root / 'HR' / f'img{index}.png'), hr)
        cv2.imwrite(str(root / 'LR' / f'img{index}x{SCALE}.png'), lr)
    return root


def paired_dataset(root, phase_options):
    return dict(name=root.name, type='PairedImageDataset', dataroot_gt=str(root / 'HR'), dataroot_lq=str(root / 'LR'),
                filename_tmpl='{}x4', io_backend=dict(type='disk'), **phase_options)


def lmdb_paired_dataset(root, phase, **extra):
    """A x4 ``PairedImageDataset`` reading ``root/gt.lmdb`` and ``root/lq.lmdb``."""
    from basicsr.data.paired_image_dataset import PairedImageDataset

    return PairedImageDataset(dict(
        name=phase, phase=phase, scale=4, dataroot_gt=str(root / 'gt.lmdb'), dataroot_lq=str(root / 'lq.lmdb'),
        io_backend=dict(type='lmdb'), filename_tmpl='{}', **extra))


def train_options(data_root, total_iter, model_type='SRModel', **train):
    """Options of a tiny x4 training on the ``data_root`` pairs (EMA 0.5, a checkpoint every 2 iterations);
    ``train`` updates the ``train`` section."""
    train_set = paired_dataset(data_root, dict(gt_size=16, use_hflip=True, use_rot=True, num_worker_per_gpu=0,
                                               batch_size_per_gpu=2, dataset_enlarge_ratio=2))
    options = dict(
        name='tiny_esc', model_type=model_type, scale=SCALE, num_gpu=0, manual_seed=0,
        datasets=dict(train=train_set), network_g=dict(TINY_ESC),
        path=dict(pretrain_network_g=None, strict_load_g=True, resume_state=None),
        train=dict(ema_decay=0.5, optim_g=dict(type='Adam', lr=1e-3), total_iter=total_iter, warmup_iter=-1,
                   scheduler=dict(type='MultiStepLR', milestones=[100], gamma=0.5),
                   pixel_opt=dict(type='L1Loss', loss_weight=1.0)),
        logger=dict(print_freq=1, save_checkpoint_freq=2, use_tb_logger=False))
    options['train'].update(train)
    return options


MSRRESNET = {'type': 'MSRResNet', 'num_feat': 8, 'num_block': 1, 'upscale': SCALE}
"""A tiny network of BasicSR's own, for runs that must behave as BasicSR does without ESC."""


def srmodel_test_options(data_root, name, pretrain=None):
    """Options of ``basicsr test`` with BasicSR's ``SRModel`` and a tiny MSRResNet on the ``data_root`` pairs."""
    return {'name': name, 'model_type': 'SRModel', 'scale': SCALE, 'num_gpu': 0,
            'datasets': {'test_1': {'name': 'set', 'type': 'PairedImageDataset', 'dataroot_gt': str(data_root / 'HR'),
                                    'dataroot_lq': str(data_root / 'LR'), 'filename_tmpl': f'{{}}x{SCALE}',
                                    'io_backend': {'type': 'disk'}}},
            'network_g': dict(MSRRESNET), 'path': {'pretrain_network_g': pretrain and str(pretrain),
                                                   'strict_load_g': True},
            'val': {'save_img': False, 'metrics': {}}}


def committed_options(relative):
    """The committed options file ``options/<relative>``, read as safe YAML."""
    return yaml.safe_load((OPTIONS_DIR / relative).read_text())


def write_yaml(path, options):
    """Write ``options`` to ``path`` as YAML (keys in their order); returns the path as a string."""
    path.write_text(yaml.safe_dump(options, sort_keys=False))
    return str(path)


def one_line_error(capsys, arguments, message, code=2):
    """``code`` and the error in the last line of stderr (after any progress bar), no traceback; returns stderr."""

    assert main(arguments) == code
    error = capsys.readouterr().err
    assert 'Traceback' not in error
    last_line = error.strip().splitlines()[-1].split('\r')[-1]
    assert last_line.startswith(f'basicsr {arguments[0]}: error: ') and message in last_line, error
    return error


def smooth_image(height, width, seed=0, channels=3):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(height // 8, 2), max(width // 8, 2), channels), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC).reshape(height, width, channels)


def image_folder(folder, sizes, seed=0):
    """``folder/img{i}.png``: smooth images of the ``(height, width)`` of ``sizes``."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, (height, width) in enumerate(sizes):
        cv2.imwrite(str(folder / f'img{index}.png'), smooth_image(height, width, seed + index))
    return folder


def hr_only_dataset(root, phase='train', scale=4, **extra):
    opt = dict(name='hr', type='HROnlyBicubicDataset', dataroot_gt=str(root), io_backend=dict(type='disk'),
               scale=scale, phase=phase)
    if phase == 'train':
        opt.update(gt_size=8 * scale, use_hflip=False, use_rot=False)
    return HROnlyBicubicDataset({**opt, **extra})


def model_options(tmp_path, scale=SCALE, is_train=True, network=None, pretrain=None, strict=True, val=None, **train):
    """Options of a tiny ESCModel as BasicSR's parser leaves them."""
    models, states = tmp_path / 'models', tmp_path / 'training_states'
    models.mkdir(exist_ok=True)
    states.mkdir(exist_ok=True)
    opt = dict(name='unit', model_type='ESCModel', scale=scale, num_gpu=0, is_train=is_train, dist=False, rank=0,
               world_size=1, network_g=network or dict(type='ESC', upscaling_factor=scale, **TINY),
               path=dict(pretrain_network_g=pretrain and str(pretrain), param_key_g='params_ema',
                         strict_load_g=strict, models=str(models), training_states=str(states)),
               val=val or {})
    if is_train:
        opt['train'] = {**dict(ema_decay=0.9, optim_g=dict(type='AdamW', lr=1e-3, betas=[0.9, 0.9], weight_decay=0),
                               scheduler=dict(type='MultiStepLR', milestones=[100], gamma=0.5),
                               pixel_opt=dict(type='L1Loss', loss_weight=1.0, reduction='mean')), **train}
    return opt


def batch(scale=SCALE, size=8):
    lq = torch.rand(2, 3, size, size)
    return {'lq': lq, 'gt': torch.nn.functional.interpolate(lq, scale_factor=scale, mode='bicubic').clamp(0, 1)}


def weights(net):
    return {name: value.detach().clone() for name, value in net.state_dict().items()}


def train_step(model, current_iter=1, data=None):
    model.feed_data(data or batch())
    model.optimize_parameters(current_iter)
    return model.get_current_log()


WAIT_SECONDS = 300



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


def logged_iterations(log):
    """``{iteration: learning rate}`` from BasicSR's training log lines."""
    return {int(it): float(lr) for _, it, lr in logged_epoch_iteration_lr(log)}


def logged_epoch_iteration_lr(log):
    return re.findall(r'epoch:\s*(\d+), iter:\s*(\d+), lr:\(([-\d.e+]+),\)', log)


def png_declaring(width, height):
    """A valid-looking PNG of a few hundred bytes whose header declares ``width`` x ``height`` RGB pixels."""
    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))

    rows = zlib.compress(b'\0' * (1 + 3 * width) * 4)  # the first rows only: a decoder allocates all of it first
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0))
            + chunk(b'IDAT', rows) + chunk(b'IEND', b''))


def assert_nothing_written(root, output, empty_folder_allowed=False):
    """No hidden (temporary) file or folder under ``root``, and no ``output``; with ``empty_folder_allowed``, an
    empty ``output`` folder may remain (``upscale`` creates its output folder before the first image)."""
    hidden = [str(path) for path in Path(root).rglob('.*')]
    assert not hidden, hidden
    if empty_folder_allowed and output.is_dir():
        assert os.listdir(output) == []
    else:
        assert not output.exists()


def upscale_arguments(tiny_checkpoint, source, output):
    checkpoint, yaml_path, _ = tiny_checkpoint
    return ['upscale', '-i', str(source), '-o', str(output), '--model', str(yaml_path), '--weights', str(checkpoint)]


def writing_command_arguments(command, tiny_checkpoint, source, output):
    """The arguments of ``command`` (upscale, make-lr, extract-subimages or make-lmdb) from ``source`` to ``output``."""
    if command == 'upscale':
        return upscale_arguments(tiny_checkpoint, source, output)
    crop = ['--crop-size', '8', '--step', '8'] if command == 'extract-subimages' else []
    return [command, '-i', str(source), '-o', str(output), *crop, '--workers', '1']


def exif_image(path, orientation, size=(24, 48)):
    """An image stored ``size`` (height, width) with a distinct corner, tagged with EXIF ``orientation``."""
    from PIL import Image

    pixels = np.zeros((*size, 3), np.uint8)
    pixels[:6, :10] = (255, 0, 0)
    pixels[-3:, :] = (0, 255, 0)
    stored = Image.fromarray(pixels)
    exif = stored.getexif()
    exif[0x0112] = orientation
    stored.save(path, exif=exif)



def assert_refused(capsys, root, before, message, command='train'):
    """One line on stderr naming ``message``, and nothing created or archived under ``root``."""
    error = capsys.readouterr().err
    assert error.startswith(f'basicsr {command}: error: ') and error.count('\n') == 1, error
    assert message in error, error
    assert sorted(os.listdir(root)) == before


def saved_state(model, iteration):
    model.save_training_state(epoch=0, current_iter=iteration)
    return os.path.join(model.opt['path']['training_states'], f'{iteration}.state')


# The tiny network of each class, built at any scale.
TINY_NETWORKS = {
    'ESC': lambda scale=4, **kw: ESC(**TINY, upscaling_factor=scale, **kw),
    'ESC-ln': lambda scale=4, **kw: ESC(**TINY, upscaling_factor=scale, use_ln=True, **kw),
    'ESCFP': lambda scale=4, **kw: ESCFP(**TINY, upscaling_factor=scale, **kw),
    'ESCReal': lambda scale=4, **kw: ESCReal(**TINY, upscaling_factor=scale, **kw),
}
