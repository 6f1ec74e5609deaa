"""ESC+LTE (arbitrary scale): the authors' outputs, the network's contract, the sampler, the model and the protocol."""
import math
import random

import cv2
import numpy as np
import pytest
import torch
from helpers import (
    TINY_LTE,
    committed_options,
    image_folder,
    model_options,
    perturbed,
    run_basicsr,
    smooth_image,
    write_yaml,
)
from torch.utils.data import DataLoader

import esc_arch  # noqa: F401  (registers; makes torchvision importable)
from esc_arch.archs import preset_config
from esc_arch.archs.esc_lte import ESCLTE, make_cell, make_coord
from esc_arch.checkpoint import load_state_dict
from esc_arch.data.arbitrary_scale_dataset import ArbitraryScaleDataset
from esc_arch.models.arbitrary_scale_model import ArbitraryScaleModel, calculate_lte_psnr

ESC_LTE_CONFIG = preset_config('ESC-LTE')


def tiny_lte(seed=0, **overrides):
    torch.manual_seed(seed)
    return perturbed(ESCLTE(**{**TINY_LTE, **overrides})).eval()


def queries(height, width, batch=1):
    coord = make_coord(height, width).expand(batch, -1, -1)
    return coord, make_cell(height, width, height * width).expand(batch, -1, -1)


def as_image(values, height, width):
    return values.view(values.shape[0], height, width, 3).permute(0, 3, 1, 2)


# ------------------------------------------------------------------ the authors' outputs


@pytest.fixture(scope='module')
def official(tmp_path_factory, fixtures_dir):
    # a test-only file from the authors' code
    fixture = torch.load(fixtures_dir / 'official_arbitrary_scale_ESC_LTE.pt', weights_only=False)
    path = tmp_path_factory.mktemp('lte') / 'authors_checkpoint.pth'
    torch.save(fixture['checkpoint'], path)  # the authors' format: {'model': {'name', 'args', 'sd'}, 'epoch'}
    network = ESCLTE(attn_type='naive').eval()  # defaults = the published configuration
    network.load_state_dict(load_state_dict(path), strict=True)  # read with weights_only=True
    return fixture, network


def test_authors_checkpoint_reproduces_their_outputs(official):
    fixture, network = official
    assert sum(p.numel() for p in network.parameters()) == fixture['n_params']
    assert len(fixture['cases']) == 2
    for case in fixture['cases']:
        height, width = case['out_size']
        assert torch.equal(make_coord(height, width), case['coord'][0])  # coordinates built as the authors do
        with torch.no_grad():
            output = network(case['x'], case['coord'], case['cell'])
        assert output.shape == (1, height * width, 3)
        assert (as_image(output, height, width).clamp(0, 1) - case['y']).abs().max() < 1e-4
        # upscale() queries the same pixels in chunks (the fixture's cells are not clipped)
        whole = network.upscale(case['x'], (height, width), chunk_size=1000, clip_cell=False)
        assert (whole - case['y']).abs().max() < 1e-4


# ------------------------------------------------------------------ the network's contract


def test_input_normalisation_and_bilinear_skip():
    network = tiny_lte()
    x = torch.rand(1, 3, 6, 7)
    coord, cell = queries(9, 11)
    with torch.no_grad():
        assert network(x, coord, cell).shape == (1, 99, 3)
        # with a zero MLP output only the bilinear skip of the normalised input is left, de-normalised:
        # y = bilinear((x - 0.5) / 0.5) * 0.5 + 0.5, which is the bilinear upsampling of x itself
        network.imnet.layers[-1].weight.zero_()
        network.imnet.layers[-1].bias.zero_()
        output = network(x, coord, cell)
    bilinear = torch.nn.functional.interpolate(x, size=(9, 11), mode='bilinear', align_corners=False)
    assert torch.allclose(as_image(output, 9, 11), bilinear, atol=1e-5)


@pytest.mark.parametrize('batch, size', [(1, (1, 1)), (2, (5, 3)), (3, (13, 17))])
def test_any_batch_and_input_size(batch, size):
    network = tiny_lte()
    x = torch.rand(batch, 3, *size)
    out_size = (round(size[0] * 2.5), round(size[1] * 2.5))
    with torch.no_grad():
        whole = network.upscale(x, out_size)
        single = torch.cat([network.upscale(x[i:i + 1], out_size) for i in range(batch)])
    assert whole.shape == (batch, 3, *out_size)
    assert torch.isfinite(whole).all() and whole.min() >= 0 and whole.max() <= 1
    assert torch.allclose(whole, single, atol=1e-5)  # each sample is independent of the others


def test_attention_backends_agree():
    network = tiny_lte()
    x = torch.rand(2, 3, 11, 9)
    coord, cell = queries(20, 17, batch=2)
    outputs = {}
    for backend in ('naive', 'sdpa'):
        network.attn_type = backend
        with torch.no_grad():
            outputs[backend] = network(x, coord, cell)
    assert torch.allclose(outputs['naive'], outputs['sdpa'], atol=1e-5)


def test_cell_clipping_beyond_the_training_scales():
    network = tiny_lte()
    x = torch.rand(1, 3, 5, 6)
    for scale, factor in ((3, 1.0), (6, 1.5), (8, 2.0)):
        height, width = 5 * scale, 6 * scale
        coord, cell = queries(height, width)
        with torch.no_grad():
            expected = as_image(network(x, coord, cell * factor), height, width).clamp(0, 1)
            assert torch.allclose(network.upscale(x, (height, width), scale=scale), expected, atol=1e-6)
        if factor > 1:
            assert not torch.allclose(network.upscale(x, (height, width), clip_cell=False), expected, atol=1e-4)


def test_chunks_and_tiles_give_the_whole_image_result():
    network = tiny_lte()
    x = torch.rand(1, 3, 14, 19)
    out_size = (49, 66)  # x3.5
    whole = network.upscale(x, out_size)
    assert torch.allclose(network.upscale(x, out_size, chunk_size=97), whole, atol=1e-6)
    # tiles whose context covers the image see what the whole image sees
    assert torch.allclose(network.upscale(x, out_size, tile_size=5, tile_pad=19), whole, atol=1e-5)
    # a smaller context still gives every pixel, close to the whole-image pass
    tiled = network.upscale(x, out_size, tile_size=8, tile_pad=4)
    assert tiled.shape == whole.shape and (tiled - whole).abs().mean() < 0.05


def test_published_configuration_is_the_default():
    network = ESCLTE()
    assert sum(p.numel() for p in network.parameters()) == 1_433_631
    assert ESC_LTE_CONFIG == dict(
        type='ESCLTE', dim=64, pdim=16, kernel_size=13, n_blocks=5, conv_blocks=5, window_size=32, num_heads=4,
        exp_ratio=1.25, hidden_dim=256, mlp_hidden=[256, 256, 256], train_scale_max=4.0)
    assert network.config == {**ESC_LTE_CONFIG, 'use_ln': False}  # the preset is the constructor's defaults
    keys = set(network.state_dict())
    assert {'encoder.plk_filter', 'coef.weight', 'freq.bias', 'phase.weight', 'imnet.layers.6.bias'} <= keys
    assert not any(key.startswith('encoder.to_img') for key in keys)
    with pytest.raises(ValueError, match='hidden_dim'):
        ESCLTE(hidden_dim=15)


# ------------------------------------------------------------------ the sampler and the evaluation protocol


def torchvision_resize(image, size):
    """The authors' resize_fn, through torchvision itself."""
    from PIL import Image
    from torchvision import transforms
    return transforms.ToTensor()(transforms.Resize(size, Image.BICUBIC)(transforms.ToPILImage()(image)))


def lte_dataset(root, phase, **extra):
    opt = dict(name='lte', type='ArbitraryScaleDataset', dataroot_gt=str(root), io_backend=dict(type='disk'),
               phase=phase)
    return ArbitraryScaleDataset({**opt, **extra})


def test_training_sample(tmp_path):
    # one image that is exactly the crop at scale 2.5 (64 -> 16 * 2.5 = 40): the crop is the whole image
    folder = image_folder(tmp_path / 'hr', [(40, 40)])
    dataset = lte_dataset(folder, 'train', lq_size=16, scale_min=2.5, scale_max=2.5, sample_q=100, augment=False)
    sample = dataset[0]
    hr = torch.from_numpy(cv2.imread(str(folder / 'img0.png'))[..., ::-1].copy()).permute(2, 0, 1).float() / 255
    assert sample['lq'].shape == (3, 16, 16) and torch.equal(sample['lq'], torchvision_resize(hr, (16, 16)))
    assert sample['coord'].shape == sample['cell'].shape == (100, 2) and sample['gt'].shape == (100, 3)
    assert len(set(map(tuple, sample['coord'].tolist()))) == 100  # sampled without replacement
    assert torch.allclose(sample['cell'], torch.tensor([2 / 40, 2 / 40]).expand(100, 2))
    rows = ((sample['coord'][:, 0] + 1) / 2 * 40 - 0.5).round().long()
    cols = ((sample['coord'][:, 1] + 1) / 2 * 40 - 0.5).round().long()
    assert torch.equal(sample['gt'], hr[:, rows, cols].t())  # each target is the RGB at its coordinate

    # random scales in [scale_min, scale_max]: the target cell tells the crop size round(lq_size * s)
    dataset = lte_dataset(folder, 'train', lq_size=8, scale_min=1, scale_max=4, sample_q=50)
    sides = {round(2 / float(dataset[0]['cell'][0, 0])) for _ in range(30)}
    assert len(sides) > 3 and min(sides) >= 8 and max(sides) <= 32


def test_evaluation_sample_and_psnr_follow_the_authors_protocol(tmp_path):
    folder = image_folder(tmp_path / 'hr', [(50, 47)])
    hr = torch.from_numpy(cv2.imread(str(folder / 'img0.png'))[..., ::-1].copy()).permute(2, 0, 1).float() / 255
    for scale, lr_size, hr_size in ((3, (16, 15), (48, 45)), (2.5, (20, 18), (50, 45)), (6, (8, 7), (48, 42))):
        sample = lte_dataset(folder, 'test', scale=scale)[0]
        assert torch.equal(sample['gt'], hr[:, :hr_size[0], :hr_size[1]])
        assert torch.equal(sample['lq'], torchvision_resize(hr[:, :hr_size[0], :hr_size[1]], lr_size))

    # PSNR: luma of the difference ((65.738, 129.057, 25.064) / 256), `scale` border pixels left out, unrounded
    rng = np.random.default_rng(0)
    gt = rng.random((3, 30, 28))
    sr = np.clip(gt + rng.normal(0, 0.05, gt.shape), 0, 1)
    luma = np.tensordot(np.array([65.738, 129.057, 25.064]) / 256, sr - gt, axes=1)
    expected = -10 * math.log10(np.mean(luma[4:-4, 4:-4] ** 2))
    as_tensor = lambda array: torch.from_numpy(array).float()[None]  # noqa: E731
    assert calculate_lte_psnr(as_tensor(sr), as_tensor(gt), 4) == pytest.approx(expected, abs=1e-3)
    rgb = -10 * math.log10(np.mean((sr - gt)[:, 10:-10, 10:-10] ** 2))
    assert calculate_lte_psnr(as_tensor(sr), as_tensor(gt), 4, protocol='div2k') == pytest.approx(rgb, abs=1e-3)


# ------------------------------------------------------------------ the BasicSR model


def lte_model(tmp_path, scale=2.5, **train):
    network = dict(type='ESCLTE', **TINY_LTE)
    val = dict(metrics=dict(psnr=dict(type='calculate_lte_psnr'),
                            psnr_8bit=dict(type='calculate_psnr', crop_border=3, test_y_channel=True)))
    opt = model_options(tmp_path, scale=scale, network=network, val=val, **train)
    opt['model_type'] = 'ArbitraryScaleModel'
    opt['path']['visualization'] = str(tmp_path / 'visualization')
    torch.manual_seed(0)
    return ArbitraryScaleModel(opt)


def validation_l1(model, dataset):
    total = 0.0
    for sample in DataLoader(dataset, batch_size=1):
        model.feed_data(sample)
        model.test()
        total += (model.output - model.gt).abs().mean().item()
    return total / len(dataset)


def test_short_training_lowers_the_validation_loss(tmp_path):
    random.seed(0)  # the sampler draws with Python's random and numpy's global generator
    np.random.seed(0)
    root = tmp_path / 'data'
    train_folder = image_folder(root / 'train', [(48, 48)] * 4)
    val_folder = image_folder(root / 'val', [(30, 33), (26, 24)], seed=10)
    train_set = lte_dataset(train_folder, 'train', lq_size=12, scale_min=1, scale_max=4, sample_q=128)
    val_set = lte_dataset(val_folder, 'val', scale=2.5)
    model = lte_model(tmp_path, ema_decay=0, optim_g=dict(type='Adam', lr=2e-3))
    before = validation_l1(model, val_set)
    loader = DataLoader(train_set, batch_size=4, shuffle=True)
    torch.manual_seed(0)
    iteration = 0
    for _ in range(15):
        for data in loader:
            iteration += 1
            model.feed_data(data)
            model.optimize_parameters(iteration)
    assert model.output.shape == (4, 128, 3)  # trained on sampled pixels
    after = validation_l1(model, val_set)
    assert after < 0.8 * before, (before, after)


@pytest.mark.parametrize('scale', [2.5, 6])
def test_validation_at_any_scale(tmp_path, scale):
    folder = image_folder(tmp_path / 'val', [(40, 37)])
    model = lte_model(tmp_path, scale=scale)
    loader = DataLoader(lte_dataset(folder, 'val', scale=scale), batch_size=1)
    model.validation(loader, current_iter=1, tb_logger=None, save_img=True)
    psnr = model.metric_results['psnr']
    assert math.isfinite(psnr) and psnr > 10
    # the logged PSNR is the protocol's, on the whole-image output at the dataset's scale
    sample = next(iter(loader))
    model.feed_data(sample)
    model.test()
    assert model.output.shape == sample['gt'].shape
    assert psnr == pytest.approx(calculate_lte_psnr(model.output, model.gt, scale))
    assert math.isfinite(model.metric_results['psnr_8bit'])  # BasicSR's metrics run on the 8-bit images
    assert len(list((tmp_path / 'visualization').rglob('*.png'))) == 1


# ------------------------------------------------------------------ options




def test_training_options_follow_the_authors_recipe():
    opt = committed_options('train/train_ESC_LTE.yml')
    assert opt['model_type'] == 'ArbitraryScaleModel'
    assert opt['network_g'] == ESC_LTE_CONFIG
    data, train = opt['datasets']['train'], opt['train']
    assert data['type'] == 'ArbitraryScaleDataset'
    assert (data['lq_size'], data['scale_min'], data['scale_max'], data['sample_q']) == (64, 1, 4, 2304)
    assert data['augment'] is True and data['batch_size_per_gpu'] == 32
    # 1,000 epochs of 800 DIV2K images x 20 repeats / batch 32 = 500 iterations per epoch
    iterations_per_epoch = 800 * data['dataset_enlarge_ratio'] // data['batch_size_per_gpu']
    assert iterations_per_epoch == 500 and train['total_iter'] == 1000 * iterations_per_epoch
    assert train['optim_g'] == {'type': 'Adam', 'lr': 2e-4, 'weight_decay': 0, 'betas': [0.9, 0.999]}
    assert train['scheduler'] == {'type': 'MultiStepLR', 'gamma': 0.5,
                                  'milestones': [epoch * iterations_per_epoch for epoch in (500, 800, 900, 950)]}
    assert train['pixel_opt']['type'] == 'L1Loss' and train['warmup_iter'] == -1 and train['ema_decay'] == 0
    assert opt['val']['metrics']['psnr']['type'] == 'calculate_lte_psnr'


@pytest.mark.parametrize('scale', [2, 3, 4, 6, 8])
def test_test_options_follow_the_authors_protocol(scale):
    opt = committed_options(f'test/test_ESC_LTE_x{scale}.yml')
    assert opt['model_type'] == 'ArbitraryScaleModel' and opt['scale'] == scale
    assert opt['network_g'] == ESC_LTE_CONFIG
    datasets = list(opt['datasets'].values())
    assert [dataset['name'] for dataset in datasets] == ['Set5', 'Set14', 'B100', 'Urban100', 'Manga109']
    for dataset in datasets:
        assert dataset['dataroot_gt'] == f'datasets/{dataset["name"]}/HR'  # x2-x4: test_arbitrary_scale_paired.py
        assert dataset['type'] == ('PairedArbitraryScaleDataset' if scale <= 4 else 'ArbitraryScaleDataset')
    assert opt['val']['metrics'] == {'psnr': {'type': 'calculate_lte_psnr', 'protocol': 'benchmark'}}
    assert opt['val']['clip_cell'] is True and opt['path']['strict_load_g'] is True
    with torch.device('meta'):
        network = ESCLTE(**{key: value for key, value in opt['network_g'].items() if key != 'type'})
    assert sum(p.numel() for p in network.parameters()) == 1_433_631


# ------------------------------------------------------------------ inference


def test_inference_helpers(tmp_path):
    from esc_arch.checkpoint import infer_network_config
    from esc_arch.errors import OptionsError
    from esc_arch.inference import forward_image, load_network
    from esc_arch.inference.arbitrary_scale import is_arbitrary_scale

    network = tiny_lte()
    assert infer_network_config(network.state_dict()) == {**network.config, 'train_scale_max': 4.0}
    assert is_arbitrary_scale(network) and not is_arbitrary_scale(network.encoder)
    options_file = tmp_path / 'lte.yml'
    write_yaml(options_file, {'scale': 4, 'network_g': {'type': 'ESCLTE', **TINY_LTE}})
    for model in (options_file, None):  # the network of a YAML, or the one its weights determine
        loaded, scale = load_network(model, {'params': network.state_dict()}, 3.5)
        assert scale == 3.5 and not loaded.training and loaded.config == network.config
        with pytest.raises(OptionsError, match='ESCLTE upscales by any factor: give --scale'):
            load_network(model, {'params': network.state_dict()})
    with pytest.raises(OptionsError, match='ESC-LTE upscales by any positive factor'):
        load_network('ESC-LTE', None, -2)

    x = torch.rand(1, 3, 9, 14)
    output = forward_image(loaded, x, scale=3.5)
    assert output.shape == (1, 3, 32, 49)  # round(9 * 3.5) = 32 (half to even), round(14 * 3.5) = 49
    assert torch.allclose(forward_image(loaded, x, scale=3.5, tile=4, tile_pad=14), output, atol=1e-5)


@pytest.mark.slow
def test_basicsr_train_then_test_with_the_generated_options(tmp_path):
    """The generated YAMLs, shrunk to a tiny network and data, through BasicSR's own train and test."""
    image_folder(tmp_path / 'datasets' / 'DIV2K' / 'DIV2K_train_HR', [(64, 64)] * 3)
    image_folder(tmp_path / 'datasets' / 'Set5' / 'HR', [(40, 36)], seed=5)
    lr_folder = tmp_path / 'datasets' / 'Set5' / 'LR_bicubic' / 'X3'  # x3 is tested on the LR files
    lr_folder.mkdir(parents=True)
    cv2.imwrite(str(lr_folder / 'img0x3.png'), smooth_image(13, 12, seed=6))
    network = dict(ESC_LTE_CONFIG, **TINY_LTE)
    train = committed_options('train/train_ESC_LTE.yml')
    train['datasets']['train'].update(lq_size=12, sample_q=64, batch_size_per_gpu=2, num_worker_per_gpu=0,
                                      dataset_enlarge_ratio=1)
    train['network_g'] = network
    train['train'].update(total_iter=4, scheduler=dict(type='MultiStepLR', milestones=[2], gamma=0.5))
    train['val']['val_freq'] = 4
    train['logger'].update(print_freq=2, save_checkpoint_freq=4, use_tb_logger=False)
    train['num_gpu'] = 0
    write_yaml(tmp_path / 'train.yml', train)
    result = run_basicsr(tmp_path, 'train', '-opt', 'train.yml')
    assert result.returncode == 0, result.stdout[-3000:]
    assert 'Validation Set5' in result.stdout and '# psnr:' in result.stdout

    test = committed_options('test/test_ESC_LTE_x3.yml')
    test['datasets'] = {'test_1': test['datasets']['test_1']}  # Set5
    test['network_g'] = network
    test['path'].update(pretrain_network_g='experiments/train_ESC_LTE/models/net_g_latest.pth', param_key_g='params')
    test['num_gpu'] = 0
    write_yaml(tmp_path / 'test.yml', test)
    result = run_basicsr(tmp_path, 'test', '-opt', 'test.yml')
    assert result.returncode == 0, result.stdout[-3000:]
    assert 'Testing Set5' in result.stdout and '# psnr:' in result.stdout


def test_upscale_command_with_a_non_integer_scale(tmp_path, capsys):
    from esc_arch.cli import main

    torch.manual_seed(0)
    weights = tmp_path / 'authors.pth'
    torch.save({'model': {'name': 'lte', 'args': {}, 'sd': perturbed(ESCLTE(), std=0.01).state_dict()}}, weights)
    image = smooth_image(10, 13)
    cv2.imwrite(str(tmp_path / 'photo.png'), image)
    arguments = ['upscale', '-i', str(tmp_path / 'photo.png'), '--model', 'ESC-LTE', '--weights', str(weights)]
    assert main([*arguments, '-o', str(tmp_path / 'out'), '--scale', '3.5']) == 0
    output = cv2.imread(str(tmp_path / 'out' / 'photo.png'))
    assert output.shape == (35, 46, 3)  # round(10 * 3.5) x round(13 * 3.5)
    # tiles (rounded up to the 32-pixel window) give the whole-image result when their context covers the image
    assert main([*arguments, '-o', str(tmp_path / 'tiled'), '--scale', '3.5', '--tile', '8', '--tile-pad', '16']) == 0
    assert np.array_equal(cv2.imread(str(tmp_path / 'tiled' / 'photo.png')), output)
    capsys.readouterr()
    assert main([*arguments, '-o', str(tmp_path / 'none')]) == 2
    assert 'give --scale' in capsys.readouterr().err


def test_profile_command(capsys):
    from esc_arch.cli import main

    assert main(['profile', '--model', 'ESC-LTE', '--scale', '2.5', '--output-size', '80x60']) == 0
    output = capsys.readouterr().out
    assert 'ESCLTE x2.5' in output and 'Params: 1,433,631' in output and '(32x24 input' in output


def test_onnx_export_is_refused_in_one_line(tmp_path, capsys):
    from esc_arch.cli import main

    assert main(['export-onnx', '--model', 'ESC-LTE', '--scale', '2', '-o', str(tmp_path / 'lte.onnx')]) == 2
    assert 'arbitrary-scale network' in capsys.readouterr().err and not list(tmp_path.iterdir())


def test_compile_keeps_esclte_eager_and_upscaling_works():
    """ESCLTE upscales through pixel queries, not forward: --compile must leave it as it is (it used to
    wrap it, and the wrapped network then went down the fixed-scale path and failed)."""
    from esc_arch.inference import compile_network, upscale_image

    network = tiny_lte()
    notices = []
    compiled, was_compiled = compile_network(network, log=notices.append)
    assert compiled is network and not was_compiled and 'Not compiling: ESCLTE' in notices[0]
    assert upscale_image(compiled, smooth_image(9, 11), 2.5).shape[:2] == (22, 28)
