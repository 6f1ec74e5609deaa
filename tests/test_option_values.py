"""BasicSR's own option values are checked before anything is created (issue 21, item 10)."""
import os

import numpy as np
import pytest
import torch
from helpers import SCALE, TINY_ESC, make_pairs, train_options, write_yaml  # noqa: E402

from esc_arch.archs.factory import build_network
from esc_arch.cli import main
from esc_arch.errors import OptionsError
from esc_arch.options import check_options

from basicsr.data import build_dataset  # noqa: E402  (after esc_arch, which makes basicsr importable)


def _set(path, value):
    """A change of the options: ``path`` (``a:b:c``, as --force_yml) set to ``value``."""

    def change(options):
        *sections, key = path.split(':')
        section = options
        for name in sections:
            section = section[name]
        section[key] = value

    return change


BAD_VALUES = [
    ('manual_seed', 'abc', "^manual_seed must be a whole number; got 'abc'"),
    ('manual_seed', -5, '^manual_seed must be at least 0; got -5$'),
    ('manual_seed', 1.5, '^manual_seed must be a whole number; got 1.5$'),
    ('model_type', [1], r'^model_type must be the name of a registered model type; got \[1\]$'),
    ('path', 'abc', r"^path must be a mapping \(key: value lines\); got 'abc'$"),
    ('path', None, '^path is missing$'),
    ('datasets:train:type', [1], r'^datasets:train:type must be the name of a registered dataset type; got \[1\]$'),
    ('datasets:train:io_backend', 'abc', r"^datasets:train:io_backend must be a mapping \(key: value lines\)"),
    ('datasets:train:io_backend', {'type': 'ftp'}, '^datasets:train:io_backend:type must be one of disk, lmdb, '
     "memcached; got 'ftp'$"),
    ('datasets:train:filename_tmpl', [1], r'^datasets:train:filename_tmpl must be a text with one \{\}'),
    ('datasets:train:filename_tmpl', '{}{}', r"^datasets:train:filename_tmpl '\{\}\{\}' is not a file name template"),
    ('datasets:train:filename_tmpl', 'x4', r'^datasets:train:filename_tmpl .* must contain "\{\}" once'),
    ('datasets:train:filename_tmpl', '{name}', r"^datasets:train:filename_tmpl '\{name\}' is not a file name template"),
    ('datasets:train:dataroot_gt', [1], r'^datasets:train:dataroot_gt must be a text; got \[1\]$'),
    ('datasets:train:use_hflip', 'yes', "^datasets:train:use_hflip must be true or false; got 'yes'$"),
    ('datasets:train:gt_size', 18, r'^datasets:train:gt_size \(18\) must be a multiple of scale \(4\), e.g. 16$'),
    ('datasets:train:gt_size', 2, r'^datasets:train:gt_size \(2\) must be a multiple of scale \(4\), e.g. 4$'),
    ('path:pretrain_network_g', [1], r'^path:pretrain_network_g must be a text; got \[1\]$'),
    ('path:strict_load_g', 'no', "^path:strict_load_g must be true or false; got 'no'$"),
    ('train:optim_g:betas', [0.9], r'^train:optim_g:betas must be a list of 2 numbers'),
    ('train:optim_g:betas', 0.9, r'^train:optim_g:betas must be a list of 2 numbers'),
    ('train:optim_g:betas', [0.9, 1.5], r'^train:optim_g:betas\[1\] must be below 1; got 1.5$'),
    ('train:optim_g:betas', [0.9, 'x'], r"^train:optim_g:betas\[1\] must be a number; got 'x'"),
    ('train:optim_g:weight_decay', 'abc', "^train:optim_g:weight_decay must be a number; got 'abc'"),
    ('train:optim_g:weight_decay', -1, '^train:optim_g:weight_decay must be at least 0; got -1$'),
    ('train:optim_g:eps', 0, '^train:optim_g:eps must be greater than 0; got 0$'),
    ('train:optim_g:weight_decy', 0.1, r'^train:optim_g:weight_decy is not an option of torch.optim.Adam '
     r'\(did you mean "weight_decay"\?\); its options are: params, lr, betas'),
    ('train:pixel_opt:loss_weight', 'abc', "^train:pixel_opt:loss_weight must be a number; got 'abc'"),
    ('train:pixel_opt:loss_weight', -1, '^train:pixel_opt:loss_weight must be at least 0; got -1$'),
    ('train:pixel_opt:reduction', 'avg', "^train:pixel_opt:reduction must be one of none, mean, sum; got 'avg'$"),
    ('train:pixel_opt:weight', 1, r'^train:pixel_opt:weight is not an option of L1Loss \(did you mean '
     r'"loss_weight"\?\)'),
    ('train:pixel_opt', None, r'^train:pixel_opt is not set: SRModel trains with train:pixel_opt or '
     'train:perceptual_opt'),
    ('train:scheduler:gamma', 'abc', "^train:scheduler:gamma must be a number; got 'abc'"),
    ('train:scheduler:gamma', -1, '^train:scheduler:gamma must be greater than 0; got -1$'),
    ('train:scheduler:gamma', 0, '^train:scheduler:gamma must be greater than 0; got 0$'),
    ('logger:wandb', 'abc', r"^logger:wandb must be a mapping \(key: value lines\); got 'abc'$"),
    ('logger:wandb', {'project': 'p'}, '^logger:wandb:project is set but logger:use_tb_logger is not true'),
    ('logger:use_tb_logger', 'yes', "^logger:use_tb_logger must be true or false; got 'yes'$"),
    ('val', 'abc', r"^val must be a mapping \(key: value lines\); got 'abc'$"),
    ('val', {'val_freq': 1, 'suffix': '../x'}, r"^val:suffix '../x' is a path .*: BasicSR makes a file name of it$"),
    ('datasets:train:name', 'a/b', "^datasets:train:name 'a/b' is a path"),
]


@pytest.fixture(scope='module')
def pairs(tmp_path_factory):
    return make_pairs(tmp_path_factory.mktemp('values') / 'pairs')


@pytest.mark.parametrize('path, value, message', BAD_VALUES, ids=[f'{path}={value!r}' for path, value, _ in BAD_VALUES])
def test_bad_value_is_one_line_options_error(pairs, path, value, message):
    options = train_options(pairs, total_iter=2)
    check_options(options)  # the options without the change are fine
    _set(path, value)(options)
    with pytest.raises(OptionsError, match=message) as error:
        check_options(options)
    assert '\n' not in str(error.value)


@pytest.mark.parametrize('path, value', [
    ('manual_seed', None), ('manual_seed', 2**31 - 1), ('train:optim_g:betas', [0.9, 0.99]),
    ('train:optim_g:weight_decay', 0), ('train:scheduler:gamma', 0.5), ('datasets:train:filename_tmpl', '{}x4'),
    ('datasets:train:gt_size', 20), ('logger:wandb', None), ('logger:wandb', {'project': None}),
    ('train:pixel_opt:reduction', 'sum'), ('datasets:train:name', 'DIV2K 800.x4'),
])
def test_sensible_values_are_accepted(pairs, path, value):
    options = train_options(pairs, total_iter=2)
    _set(path, value)(options)
    check_options(options)


def test_prefetch_mode_cuda_needs_cuda_and_pinned_memory(pairs, monkeypatch):
    options = train_options(pairs, total_iter=2)
    options['datasets']['train']['prefetch_mode'] = 'cuda'
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(OptionsError, match='^datasets:train:prefetch_mode is cuda but CUDA is not available'):
        check_options(options)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    with pytest.raises(OptionsError, match='^datasets:train:prefetch_mode cuda needs datasets:train:pin_memory: true'):
        check_options(options)
    options['datasets']['train']['prefetch_mode'] = 'gpu'
    with pytest.raises(OptionsError, match="^datasets:train:prefetch_mode must be one of cpu, cuda; got 'gpu'"):
        check_options(options)


def test_test_options_skip_the_training_sections(pairs):
    """``basicsr test`` reads neither ``train`` nor ``logger``: their values are not its business."""
    options = train_options(pairs, total_iter=2)
    options['datasets'] = {'test_1': dict(options['datasets']['train'], phase='test')}
    options['train']['scheduler']['gamma'] = -1
    options['logger']['wandb'] = 'abc'
    check_options(options, is_train=False)


@pytest.mark.parametrize('gt_size', [12, 20])
def test_esc_trains_on_crops_that_are_no_multiple_of_its_window(pairs, gt_size):
    """The multiple ESC needs is the scale alone: an LR crop of gt_size / scale pixels that is no multiple of
    window_size (8) gives an output the size of the HR crop, and gradients everywhere."""
    assert (gt_size // SCALE) % TINY_ESC['window_size']
    dataset = build_dataset(dict(train_options(pairs, 2)['datasets']['train'], phase='train', scale=SCALE,
                                 gt_size=gt_size))
    item = dataset[0]
    network = build_network(dict(TINY_ESC))
    output = network(item['lq'][None])
    assert output.shape == item['gt'][None].shape
    torch.nn.functional.l1_loss(output, item['gt'][None]).backward()
    assert all(parameter.grad is not None for parameter in network.parameters())


def test_gt_size_no_multiple_of_scale_would_give_crops_of_different_sizes():
    """Why such a gt_size is refused: BasicSR crops gt_size HR pixels but gt_size // scale LR pixels."""
    from basicsr.data.transforms import paired_random_crop

    gt, lq = paired_random_crop(np.zeros((32, 32, 3)), np.zeros((8, 8, 3)), 18, SCALE, 'gt.png')
    assert lq.shape[0] * SCALE != gt.shape[0]


def test_negative_gamma_is_refused_by_basicsr_train_before_anything_is_created(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_yaml(tmp_path / 'train.yml', train_options(make_pairs(tmp_path / 'pairs'), total_iter=2))
    before = sorted(os.listdir(tmp_path))
    assert main(['train', '-opt', 'train.yml', '--force_yml', 'train:scheduler:gamma=-1']) == 2
    error = capsys.readouterr().err
    assert error == 'basicsr train: error: train:scheduler:gamma must be greater than 0; got -1\n'
    assert sorted(os.listdir(tmp_path)) == before
