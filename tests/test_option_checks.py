"""Options checked before anything is built or written: wrong keys, values, datasets and launchers are
one-line errors through the ``basicsr`` dispatcher."""
import os

import pytest
import torch
from helpers import (  # noqa: E402
    SCALE,
    TINY_ESC,
    assert_refused,
    make_pairs,
    paired_dataset,
    train_options,
    write_yaml,
)

from esc_arch.cli import main
from esc_arch.options import check_options


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
    options = train_options(make_pairs(tmp_path / 'pairs'), 2, model_type='ESCModel', ema_decay=0.9)
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
    options = train_options(make_pairs(tmp_path / 'pairs'), 2, model_type='ESCModel', ema_decay=0.9)
    options['path']['pretrain_network_g'] = str(tmp_path / 'moved_away.pth')
    check_options(options, resuming=True)  # BasicSR loads the experiment's own checkpoint instead


@pytest.mark.parametrize('change, message', [
    (dict(batch_size_per_gpu=4, dataset_enlarge_ratio=1), '3 training image(s) x dataset_enlarge_ratio 1 give 3 per '
     'epoch, fewer than batch_size_per_gpu 4: BasicSR drops incomplete batches, so no iteration would run'),
    (dict(total_iter=0), 'train:total_iter must be at least 1; got 0'),
], ids=['batch-larger-than-dataset', 'zero-iterations'])
def test_training_that_would_run_no_iteration_is_refused(tmp_path, monkeypatch, capsys, change, message):
    monkeypatch.chdir(tmp_path)
    options = train_options(make_pairs(tmp_path / 'pairs'), 2, model_type='ESCModel')
    options['train']['total_iter'] = change.pop('total_iter', 2)
    options['datasets']['train'].update(change)
    write_yaml(tmp_path / 'train.yml', options)
    before = sorted(os.listdir(tmp_path))
    assert main(['train', '-opt', 'train.yml']) == 2
    assert_refused(capsys, tmp_path, before, message)


def _set(section, **values):

    def modify(options):
        target = options
        for key in section.split(':') if section else ():
            target = target[key]
        target.update(values)

    return modify


def _rename(section, old, new):
    return lambda options: options[section].update({new: options[section].pop(old)})


@pytest.mark.parametrize('modify, message', [
    (_set('train', total_iter='abc'), "train:total_iter must be a number; got 'abc'"),
    (_set('datasets:train', batch_size_per_gpu=0), 'datasets:train:batch_size_per_gpu must be at least 1; got 0'),
    (_set('datasets:train', gt_size=-16), 'datasets:train:gt_size must be at least 1; got -16'),
    (_set('train:optim_g', lr='1e-4'), "train:optim_g:lr must be a number; got '1e-4' (write 1e-4 as 1.0e-4"),
    (_set('logger', save_checkpoint_freq=0), 'logger:save_checkpoint_freq must be at least 1; got 0'),
    (lambda options: options.update(val=dict(val_freg=2, metrics={})),
     'val:val_freg is not an option BasicSR or ESC reads; did you mean "val_freq"?'),
    (_rename('logger', 'print_freq', 'print_frequency'), 'logger:print_frequency is not an option'),
    (_set('train:pixel_opt', type='L1Los'), 'train:pixel_opt:type: no loss named "L1Los" is registered; did you '
     'mean "L1Loss"?'),
    (_set('train:optim_g', type='Adamm'), 'train:optim_g:type: ESCModel cannot build an optimizer "Adamm"; did you '
     'mean "Adam"?'),
    (lambda options: options.update(model_type='SRModel') or options['train']['optim_g'].update(type='AdamW'),
     'SRModel cannot build an optimizer "AdamW"; did you mean "Adam"? it takes Adam'),
    (_set('train', mixed_precision='fp8'), "train:mixed_precision must be one of bf16, fp16 or null; got 'fp8'"),
    (_set('train:scheduler', type='CosineAnnealing'), 'BasicSR has no scheduler "CosineAnnealing"; did you mean '
     '"CosineAnnealingRestartLR"?'),
    pytest.param(_set('', num_gpu=2), 'num_gpu is 2 but CUDA is not available on this machine',
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason='needs a machine without CUDA')),
    (_set('network_g', dim=100000, pdim=8), 'network_g (ESC): its 330,052,656,986 weights need 1320.2 GB, more than '
     'the'),
    (_set('train:scheduler', milestones=200000), 'train:scheduler:milestones must be a list of iteration numbers, '
     'e.g. [200000, 400000]; got 200000'),
], ids=['total-iter-text', 'batch-0', 'negative-gt-size', 'lr-text', 'checkpoint-freq-0', 'val-freq-typo',
        'logger-typo', 'loss', 'optimizer', 'basicsr-optimizer', 'precision', 'scheduler', 'num-gpu', 'huge-network',
        'milestones-scalar'])
def test_wrong_option_values_are_one_line_before_anything_is_written(tmp_path, monkeypatch, capsys, modify, message):
    monkeypatch.chdir(tmp_path)
    options = train_options(make_pairs(tmp_path / 'pairs'), 2, model_type='ESCModel')
    modify(options)
    write_yaml(tmp_path / 'train.yml', options)
    before = sorted(os.listdir(tmp_path))
    assert main(['train', '-opt', 'train.yml']) == 2
    assert_refused(capsys, tmp_path, before, message)


@pytest.mark.parametrize('launcher, message', [
    ('pytorch', '--launcher pytorch needs the environment variable(s) RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT'),
    ('slurm', '--launcher slurm needs the environment variable(s) SLURM_PROCID, SLURM_NTASKS, SLURM_NODELIST'),
])
def test_launcher_without_its_environment_is_one_line(tmp_path, monkeypatch, capsys, launcher, message):
    monkeypatch.chdir(tmp_path)
    for name in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT', 'SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST'):
        monkeypatch.delenv(name, raising=False)
    write_yaml(tmp_path / 'train.yml', train_options(make_pairs(tmp_path / 'pairs'), 2, model_type='ESCModel'))
    before = sorted(os.listdir(tmp_path))
    assert main(['train', '-opt', 'train.yml', '--launcher', launcher]) == 2
    assert_refused(capsys, tmp_path, before, message)
