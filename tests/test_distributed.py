"""Multi-process training through BasicSR's launcher (``--launcher pytorch`` under torchrun), on CPU with gloo."""
import os
import subprocess
import sys

import pytest
import torch
from helpers import TINY_ESC, image_folder, write_yaml

import esc_arch  # noqa: F401  (makes basicsr importable; conftest.py applies the gloo launcher patches)

# Runs `basicsr` in every process and records each rank's weights whenever the model saves.
DRIVER = '''
import sys
import torch
from esc_arch.cli import main
from esc_arch.models import ESCModel

save = ESCModel.save


def save_and_record(self, epoch, current_iter):
    save(self, epoch, current_iter)
    torch.save(self.get_bare_model(self.net_g).state_dict(), f'rank{self.opt["rank"]}_iter{current_iter}.pth')


ESCModel.save = save_and_record
sys.exit(main())
'''


@pytest.mark.slow
def test_two_process_training_saves_once_and_the_ranks_agree(tmp_path):
    train_images = image_folder(tmp_path / 'train', [(48, 48)] * 4)
    val_images = image_folder(tmp_path / 'val', [(48, 48)], seed=4)
    options = dict(
        name='two_ranks', model_type='ESCModel', scale=2, num_gpu='auto', manual_seed=0,
        datasets=dict(
            train=dict(name='train', type='HROnlyBicubicDataset', dataroot_gt=str(train_images),
                       io_backend=dict(type='disk'), gt_size=32, num_worker_per_gpu=0, batch_size_per_gpu=2),
            val=dict(name='val', type='HROnlyBicubicDataset', dataroot_gt=str(val_images),
                     io_backend=dict(type='disk'))),
        network_g=dict(TINY_ESC, upscaling_factor=2),
        path=dict(pretrain_network_g=None, strict_load_g=True, resume_state=None),
        train=dict(ema_decay=0.9, optim_g=dict(type='AdamW', lr=1e-3), total_iter=6, warmup_iter=-1,
                   scheduler=dict(type='MultiStepLR', milestones=[100], gamma=0.5), pixel_opt=dict(type='L1Loss')),
        val=dict(val_freq=6, save_img=False, metrics=dict(psnr=dict(type='calculate_psnr', crop_border=2))),
        logger=dict(print_freq=2, save_checkpoint_freq=3, use_tb_logger=False))
    write_yaml(tmp_path / 'train.yml', options)
    (tmp_path / 'driver.py').write_text(DRIVER)

    result = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', 'driver.py', 'train',
         '-opt', 'train.yml', '--launcher', 'pytorch'], cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={**os.environ, 'OMP_NUM_THREADS': '1'})  # one thread per process: two processes share the cores
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert 'World size (gpu number): 2' in output and 'Validation val' in output

    experiment = tmp_path / 'experiments' / 'two_ranks'
    assert sorted(path.name for path in (experiment / 'models').iterdir()) == [
        'net_g_3.pth', 'net_g_6.pth', 'net_g_latest.pth']  # written once, by rank 0; no temporary files
    assert sorted(path.name for path in (experiment / 'training_states').iterdir()) == ['3.state', '6.state']
    for current_iter in (3, 6):
        rank0 = torch.load(tmp_path / f'rank0_iter{current_iter}.pth')
        rank1 = torch.load(tmp_path / f'rank1_iter{current_iter}.pth')
        for name, value in rank0.items():  # the ranks read different images; DDP kept their weights identical
            assert torch.equal(rank1[name], value), name
    saved = torch.load(experiment / 'models' / 'net_g_6.pth')['params']
    assert all(torch.equal(value, rank0[name]) for name, value in saved.items())
    at_3 = torch.load(tmp_path / 'rank0_iter3.pth')
    assert any(not torch.equal(at_3[name], value) for name, value in saved.items())  # and training moved them


def test_slurm_initialisation_without_cuda_uses_gloo(monkeypatch):
    from basicsr.utils import dist_util

    calls = []
    monkeypatch.setattr(torch.distributed, 'init_process_group', lambda backend, **kwargs: calls.append(backend))
    monkeypatch.setattr(dist_util.subprocess, 'getoutput', lambda command: 'node001')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    for name, value in dict(SLURM_PROCID='3', SLURM_NTASKS='4', SLURM_NODELIST='node[001-002]').items():
        monkeypatch.setenv(name, value)
    for name in ('MASTER_PORT', 'MASTER_ADDR', 'WORLD_SIZE', 'RANK', 'LOCAL_RANK'):
        monkeypatch.delenv(name, raising=False)
    device_count = torch.cuda.device_count

    dist_util._init_dist_slurm('nccl', port=29501)  # what `--launcher slurm` runs, with dist_params
    assert calls == ['gloo']
    assert (os.environ['RANK'], os.environ['WORLD_SIZE'], os.environ['MASTER_ADDR']) == ('3', '4', 'node001')
    assert torch.cuda.device_count is device_count  # the stand-in for a CUDA device is gone again
