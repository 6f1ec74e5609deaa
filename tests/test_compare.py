"""Comparison pictures: ``basicsr upscale --compare`` and the demo's comparison.png layout."""
import cv2
import numpy as np
import pytest
import torch
from helpers import smooth_image

from esc_arch.archs import build_preset
from esc_arch.cli import main
from esc_arch.comparison import (
    CAPTION_HEIGHT,
    GAP,
    LABEL_HEIGHT,
    PANEL_SIZE,
    most_detailed_region,
    network_label,
    reference_comparison,
    upscale_comparison,
)
from esc_arch.inference import load_network

try:
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401
    HAS_ONNX = True
except ImportError:
    HAS_ONNX = False
needs_onnx = pytest.mark.skipif(not HAS_ONNX, reason='needs onnx and onnxruntime')


def _flat_with_texture(height, width, top, left, size):
    image = np.full((height, width, 3), 128, np.uint8)
    rng = np.random.default_rng(0)
    image[top:top + size, left:left + size] = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    return image


def test_most_detailed_region_finds_the_texture():
    assert most_detailed_region(_flat_with_texture(120, 200, 40, 130, 32), 32) == (40, 130)
    assert most_detailed_region(_flat_with_texture(20, 24, 0, 0, 8), 64) == (0, 0)  # window clipped to the image


def test_upscale_comparison_layout_and_crop():
    sr = _flat_with_texture(80, 120, 30, 70, 32)
    lr = cv2.resize(sr, (30, 20), interpolation=cv2.INTER_AREA)
    picture = upscale_comparison(lr, sr, 4, 'ESC x4', crop_size=32)
    assert picture.shape == (LABEL_HEIGHT + PANEL_SIZE + CAPTION_HEIGHT, 3 * PANEL_SIZE + 2 * GAP, 3)
    assert picture.dtype == np.uint8
    # The third panel is the network's crop, enlarged with nearest neighbour: its pixels are the texture's.
    network_panel = picture[LABEL_HEIGHT:LABEL_HEIGHT + PANEL_SIZE, 2 * (PANEL_SIZE + GAP):]
    torch.testing.assert_close(network_panel[::PANEL_SIZE // 32, ::PANEL_SIZE // 32], sr[30:62, 70:102])
    assert (picture[:LABEL_HEIGHT] < 128).any()  # a label is drawn
    assert (picture[:LABEL_HEIGHT + PANEL_SIZE, PANEL_SIZE:PANEL_SIZE + GAP] == 255).all()  # white gap between panels
    assert (picture[-CAPTION_HEIGHT:] < 128).any()  # the caption (crop size, enlargement) is drawn


def test_captions_say_crops_are_enlarged_and_scores_are_of_whole_images(monkeypatch):
    captions = []
    monkeypatch.setattr('esc_arch.comparison._put_text', lambda picture, text, *args, **kwargs:
                        captions.append(text))
    sr = _flat_with_texture(80, 120, 30, 70, 32)
    upscale_comparison(sr[::4, ::4], sr, 4, 'ESC x4', crop_size=32)
    assert captions[-1] == 'crop: 32x32 output pixels, shown enlarged 10x (nearest neighbour)'
    reference_comparison(sr[::4, ::4], {'bicubic 20.00 dB': sr}, sr, 4, crop_size=64)
    assert captions[-1] == ('crop: 64x64 HR pixels, shown enlarged 5x (nearest neighbour); '
                            'dB: PSNR of the whole image, not of the crop')


@pytest.mark.parametrize('preset, scale', [('ESC', 4), ('ESC-light', 4), ('ESC-FP', 3), ('ESC-XL', 2)])
def test_network_label_names_the_variant(preset, scale):
    assert network_label(build_preset(preset, scale=scale), scale) == f'{preset} x{scale}'


def test_network_label_of_other_networks(tiny_checkpoint):
    _, _, network = tiny_checkpoint
    assert network_label(network, 2) == 'ESC x2'  # no published variant: the class
    assert network_label(build_preset('ESC-LTE'), 3.5) == 'ESC-LTE x3.5'


def test_upscale_comparison_accepts_every_layout():
    for lr in (np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint16), np.zeros((8, 8, 1), np.float32)):
        sr = cv2.resize(lr, (16, 16)).reshape(16, 16, *lr.shape[2:])
        assert upscale_comparison(lr, sr, 2, 'ESC x2').shape == (
            LABEL_HEIGHT + PANEL_SIZE + CAPTION_HEIGHT, 3 * PANEL_SIZE + 2 * GAP, 3)


def test_reference_comparison_has_lr_results_and_hr_panels():
    hr = _flat_with_texture(96, 128, 48, 64, 32)
    lr = hr[::4, ::4]
    picture = reference_comparison(lr, {'bicubic 20.00 dB': hr, 'ESC-light 21.00 dB': hr}, hr, 4, crop_size=32)
    assert picture.shape == (LABEL_HEIGHT + PANEL_SIZE + CAPTION_HEIGHT, 4 * PANEL_SIZE + 3 * GAP, 3)
    lr_panel = picture[LABEL_HEIGHT:LABEL_HEIGHT + PANEL_SIZE, :PANEL_SIZE]
    torch.testing.assert_close(lr_panel[::PANEL_SIZE // 8, ::PANEL_SIZE // 8], lr[12:20, 16:24])


def test_upscale_compare_without_model(tiny_checkpoint, tmp_path, capsys):
    checkpoint, _, network = tiny_checkpoint
    folder = tmp_path / 'in'
    folder.mkdir()
    cv2.imwrite(str(folder / 'photo.png'), smooth_image(20, 28))
    out = tmp_path / 'out'
    assert main(['upscale', '-i', str(folder), '-o', str(out), '--weights', str(checkpoint), '--compare']) == 0
    assert cv2.imread(str(out / 'photo.png')).shape == (40, 56, 3)  # x2, network read from the checkpoint
    assert sorted(path.name for path in (out / 'comparisons').iterdir()) == ['photo.png']  # not photo.png.png
    picture = cv2.imread(str(out / 'comparisons' / 'photo.png'))
    assert picture.shape == (LABEL_HEIGHT + PANEL_SIZE + CAPTION_HEIGHT, 3 * PANEL_SIZE + 2 * GAP, 3)
    assert 'upscaled 1 of 1 image(s) x2' in capsys.readouterr().out


def test_load_network_from_weights_alone(tiny_checkpoint):
    checkpoint, _, network = tiny_checkpoint
    loaded, scale = load_network(None, checkpoint)
    assert scale == 2 and type(loaded) is type(network)
    from_dict, _ = load_network(None, {'params_ema': network.state_dict()})
    lr = torch.rand(1, 3, 12, 12)
    with torch.inference_mode():
        expected = network(lr)
        torch.testing.assert_close(loaded(lr), expected)
        torch.testing.assert_close(from_dict(lr), expected)


def test_model_is_optional_in_profile(tiny_checkpoint, capsys):
    checkpoint, _, _ = tiny_checkpoint
    assert main(['profile', '--weights', str(checkpoint), '--output-size', '64x64']) == 0
    assert capsys.readouterr().out.startswith('ESC x2\nParams: ')
    assert main(['profile']) == 2
    assert 'error: no network given' in capsys.readouterr().err


@needs_onnx
def test_model_is_optional_in_export(tiny_checkpoint, tmp_path):
    checkpoint, _, _ = tiny_checkpoint
    assert main(['export-onnx', '--weights', str(checkpoint), '-o', str(tmp_path / 'tiny.onnx'), '--no-check']) == 0
    assert (tmp_path / 'tiny.onnx').is_file()
