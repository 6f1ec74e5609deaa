"""The authors' test protocol: LR reflect-padded to whole windows, output cropped."""
import re

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import SCALE, TINY, model_options, perturbed, write_yaml  # noqa: E402

from esc_arch import ESC
from esc_arch.cli import main
from esc_arch.inference.window_padding import forward_padded_to_window

from basicsr.metrics import calculate_psnr  # noqa: E402  (after esc_arch, which makes basicsr importable)
from basicsr.models import build_model  # noqa: E402
from basicsr.utils import tensor2img  # noqa: E402

SET5 = ('baby', 'bird', 'butterfly', 'head', 'woman')
WINDOW = TINY['window_size']  # of the tiny network of model_options


def rgb_tensor(path):
    return torch.from_numpy(cv2.imread(str(path))[:, :, ::-1].astype(np.float32) / 255.).permute(2, 0, 1)[None]


def mean_psnr(network, datasets_dir, scale, pad):
    """Set5 PSNR-Y (border = scale) computed here, independently of ESCModel: BasicSR's calculate_psnr on
    uint8 images, the LR reflect-padded at the bottom/right to whole windows (``pad``) or fed as it is."""
    values = []
    for name in SET5:
        lr = rgb_tensor(datasets_dir / 'Set5' / 'LR_bicubic' / f'X{scale}' / f'{name}x{scale}.png')
        hr = cv2.imread(str(datasets_dir / 'Set5' / 'HR' / f'{name}.png'))
        height, width = lr.shape[-2:]
        window = network.window_size
        padded = F.pad(lr, (0, -width % window, 0, -height % window), mode='reflect') if pad else lr
        with torch.no_grad():
            sr = network(padded)[..., :height * scale, :width * scale]
        values.append(calculate_psnr(tensor2img(sr), hr[:height * scale, :width * scale], crop_border=scale,
                                     test_y_channel=True))
    return sum(values) / len(values)


def logged_psnr(results_dir):
    log = next(results_dir.glob('*.log')).read_text()
    return float(re.search(r'# psnr: ([0-9.]+)', log).group(1))


@pytest.mark.slow
def test_basicsr_test_scores_set5_as_the_authors(tmp_path, monkeypatch, fixtures_dir, datasets_dir,
                                                 fresh_basicsr_logger):
    fixture = torch.load(fixtures_dir / 'official_ESC_light_x2.pt', weights_only=False)
    scale = fixture['config']['upscaling_factor']
    network = ESC(**fixture['config']).eval()
    network.load_state_dict(fixture['state_dict'])
    torch.save({'params_ema': fixture['state_dict']}, tmp_path / 'weights.pth')
    set5 = dict(name='Set5', type='PairedImageDataset', dataroot_gt=str(datasets_dir / 'Set5' / 'HR'),
                dataroot_lq=str(datasets_dir / 'Set5' / 'LR_bicubic' / f'X{scale}'), filename_tmpl=f'{{}}x{scale}',
                io_backend=dict(type='disk'))
    options = write_yaml(tmp_path / 'test.yml', dict(
        name='protocol', model_type='ESRModel', scale=scale, num_gpu=0, manual_seed=0, datasets=dict(test_1=set5),
        network_g=dict(type='ESC', **fixture['config']),
        path=dict(pretrain_network_g=str(tmp_path / 'weights.pth'), param_key_g='params_ema', strict_load_g=True),
        val=dict(save_img=False, metrics=dict(psnr=dict(type='calculate_psnr', crop_border=scale,
                                                        test_y_channel=True)))))
    monkeypatch.chdir(tmp_path)

    assert main(['test', '-opt', options]) == 0
    padded = mean_psnr(network, datasets_dir, scale, pad=True)
    assert logged_psnr(tmp_path / 'results' / 'protocol') == pytest.approx(padded, abs=6e-5)  # logged to 4 decimals

    # val:pad_to_window=false gives this (test_padding_is_on_by_default_and_combines_with_tiling_and_ensemble)
    unpadded = mean_psnr(network, datasets_dir, scale, pad=False)
    assert abs(padded - unpadded) > 1e-3  # the protocol matters at the precision of the paper's tables


def test_padding_is_on_by_default_and_combines_with_tiling_and_ensemble(tmp_path):
    lq = torch.rand(1, 3, 11, 13)  # not multiples of the tiny network's window
    model = build_model(model_options(tmp_path, is_train=False))
    perturbed(model.net_g)
    network = model.net_g.eval()
    model.feed_data({'lq': lq})
    model.test()
    with torch.no_grad():
        expected = network(F.pad(lq, (0, -13 % WINDOW, 0, -11 % WINDOW), mode='reflect'))[..., :11 * SCALE, :13 * SCALE]
        unpadded = network(lq)
    torch.testing.assert_close(model.output, expected)
    assert not torch.allclose(model.output, unpadded, atol=1e-4)

    off = build_model(model_options(tmp_path, is_train=False, val=dict(pad_to_window=False)))
    off.net_g.load_state_dict(network.state_dict())
    off.feed_data({'lq': lq})
    off.test()
    torch.testing.assert_close(off.output, unpadded)

    # tiles of the padded image (one tile covering it all: the same as untiled), and each ensemble view padded
    tiled = build_model(model_options(tmp_path, is_train=False, val=dict(tile_size=16, tile_pad=8,
                                                                          self_ensemble=True)))
    tiled.net_g.load_state_dict(network.state_dict())
    tiled.feed_data({'lq': lq})
    tiled.test()
    with torch.no_grad():
        views = []
        for transpose in (False, True):
            for flips in ((), (-1, ), (-2, ), (-2, -1)):
                view = lq.transpose(-2, -1) if transpose else lq
                view = view.flip(flips) if flips else view
                out = forward_padded_to_window(network, view, WINDOW, SCALE)
                out = out.flip(flips) if flips else out
                views.append(out.transpose(-2, -1) if transpose else out)
    torch.testing.assert_close(tiled.output, sum(views) / 8)


def test_images_smaller_than_half_a_window(tmp_path):
    model = build_model(model_options(tmp_path, is_train=False))
    for size in ((1, 1), (2, 3), (3, 7)):  # reflect padding alone needs the pad to be smaller than the side
        lq = torch.rand(1, 3, *size)
        model.feed_data({'lq': lq})
        model.test()
        assert model.output.shape == (1, 3, size[0] * SCALE, size[1] * SCALE)
        assert torch.isfinite(model.output).all()
    # mirrored again: a 3-pixel side padded to a window reads 0 1 2 1 0 1 2 1 ...
    lq = torch.arange(3.).view(1, 1, 3, 1).expand(1, 3, 3, WINDOW) / 2
    seen = []
    handle = model.net_g.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0]))
    model.feed_data({'lq': lq})
    model.test()
    handle.remove()
    assert seen[0][0, 0, :, 0].tolist() == [(0, 0.5, 1, 0.5)[row % 4] for row in range(WINDOW)]


def test_networks_without_a_window_are_fed_as_they_are(tmp_path):
    model = build_model(model_options(tmp_path, is_train=False, network=dict(type='Bicubic', upscaling_factor=SCALE)))
    seen = []
    model.net_g.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0].shape))
    model.feed_data({'lq': torch.rand(1, 3, 5, 7)})
    model.test()
    assert seen == [(1, 3, 5, 7)]



@pytest.mark.parametrize('key', ['pad_to_window', 'self_ensemble'])
def test_val_switches_must_be_true_or_false(tmp_path, key):
    from esc_arch.errors import OptionsError
    from esc_arch.options.values import check_values

    options = model_options(tmp_path, is_train=False, val={key: False})
    check_values(options, is_train=False)
    options['val'][key] = 'maybe'  # would count as true without the check
    with pytest.raises(OptionsError, match=f"val:{key} must be true or false; got 'maybe'"):
        check_values(options, is_train=False)
