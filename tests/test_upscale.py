"""``basicsr upscale``: image layouts and depths, tiling, precision, safety of inputs and outputs, one-line errors."""
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from helpers import (  # noqa: E402
    SCALE,
    TINY,
    TINY_ESC,
    RunsCode,
    exif_image,
    image_folder,
    one_line_error,
    png_declaring,
    smooth_image,
    upscale_arguments,
    write_yaml,
)

from esc_arch import ESC
from esc_arch.archs import build_preset
from esc_arch.cli import main
from esc_arch.images import read_image, write_image
from esc_arch.inference import upscale_image

HEIGHT, WIDTH = 20, 27


@pytest.fixture
def photo_folder(tmp_path):
    """RGB, grayscale, RGBA (8-bit) and 16-bit RGB PNGs of smooth random content."""
    rng = np.random.default_rng(0)

    def smooth(channels, maximum, dtype):
        small = rng.uniform(0, maximum, (5, 7, channels)).astype(np.float32)
        image = cv2.resize(small, (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC)
        return np.clip(np.round(image), 0, maximum).astype(dtype).squeeze()

    folder = tmp_path / 'photos'
    folder.mkdir()
    cv2.imwrite(str(folder / 'rgb.png'), smooth(3, 255, np.uint8))
    cv2.imwrite(str(folder / 'gray.png'), smooth(1, 255, np.uint8))
    cv2.imwrite(str(folder / 'rgba.png'), smooth(4, 255, np.uint8))
    cv2.imwrite(str(folder / 'deep.png'), smooth(3, 65535, np.uint16))
    return folder


def _read(path):
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def _reference(network, bgr, pixel_max):
    """The network's output for an OpenCV BGR image, computed without the command's code: the LR reflect-padded
    at the bottom and right to whole windows (the authors' protocol, the command's default), the output cropped."""
    rgb = torch.from_numpy(bgr[..., ::-1].astype(np.float32) / pixel_max).permute(2, 0, 1)[None]
    height, width = rgb.shape[-2:]
    window, scale = network.window_size, network.upscaling_factor
    padded = torch.nn.functional.pad(rgb, (0, -width % window, 0, -height % window), mode='reflect')
    with torch.no_grad():
        sr = network(padded)[..., :height * scale, :width * scale].clamp(0, 1)[0].permute(1, 2, 0).numpy()[..., ::-1]
    return sr * pixel_max


def test_folder_keeps_names_layouts_and_depths(tiny_checkpoint, photo_folder, tmp_path, capsys):
    checkpoint, yaml_path, network = tiny_checkpoint
    out = tmp_path / 'out'
    assert main(['upscale', '-i', str(photo_folder), '-o', str(out), '--model', str(yaml_path),
                 '--weights', str(checkpoint)]) == 0
    assert 'upscaled 4 of 4 image(s) x2' in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ['deep.png', 'gray.png', 'rgb.png', 'rgba.png']

    rgb, source = _read(out / 'rgb.png'), _read(photo_folder / 'rgb.png')
    assert rgb.shape == (2 * HEIGHT, 2 * WIDTH, 3) and rgb.dtype == np.uint8
    assert np.abs(rgb - _reference(network, source, 255)).max() <= 1  # channel order and value range kept

    deep, source = _read(out / 'deep.png'), _read(photo_folder / 'deep.png')
    assert deep.dtype == np.uint16
    assert np.abs(deep - _reference(network, source, 65535)).max() <= 2  # 16-bit precision, not 8-bit steps

    gray, source = _read(out / 'gray.png'), _read(photo_folder / 'gray.png')
    assert gray.shape == (2 * HEIGHT, 2 * WIDTH) and gray.dtype == np.uint8
    expected = cv2.cvtColor(_reference(network, np.dstack([source] * 3), 255).astype(np.float32), cv2.COLOR_BGR2GRAY)
    assert np.abs(gray - expected).max() <= 1

    rgba, source = _read(out / 'rgba.png'), _read(photo_folder / 'rgba.png')
    assert rgba.shape == (2 * HEIGHT, 2 * WIDTH, 4)
    assert np.abs(rgba[..., :3] - _reference(network, source[..., :3], 255)).max() <= 1
    alpha = cv2.resize(source[..., 3].astype(np.float32) / 255, (2 * WIDTH, 2 * HEIGHT), interpolation=cv2.INTER_CUBIC)
    assert np.abs(rgba[..., 3] - np.clip(alpha, 0, 1) * 255).max() <= 0.5
    assert not list(out.glob('.*'))  # no temporary files left behind


def test_single_file_and_preset_with_scale_from_checkpoint(tmp_path, photo_folder, capsys):
    network = build_preset('ESC-FP', scale=3)
    torch.save(network.state_dict(), tmp_path / 'fp_x3.pth')  # bare state dict
    assert main(['upscale', '-i', str(photo_folder / 'rgb.png'), '-o', str(tmp_path / 'out'), '--model', 'esc-fp',
                 '--weights', str(tmp_path / 'fp_x3.pth')]) == 0
    assert 'x3' in capsys.readouterr().out
    assert _read(tmp_path / 'out' / 'rgb.png').shape == (3 * HEIGHT, 3 * WIDTH, 3)


def test_tiled_output_matches_whole_image(tiny_checkpoint):
    _, _, network = tiny_checkpoint
    image = np.random.default_rng(1).random((45, 53, 3), dtype=np.float32)
    whole = upscale_image(network, image, 2)
    tiled = upscale_image(network, image, 2, tile=16, tile_pad=16)  # what the command uses: two windows of context
    # window-aligned tiles differ from one pass only through the dynamic kernels' average pooling
    # and the decaying influence of what lies beyond the context
    assert np.abs(tiled - whole).max() < 1e-3


@pytest.mark.parametrize('precision, tolerance', [('fp16', 0.02), ('bf16', 0.08)])
def test_half_precision_close_to_fp32(tiny_checkpoint, photo_folder, tmp_path, precision, tolerance):
    checkpoint, yaml_path, _ = tiny_checkpoint
    results = {}
    for name in ('fp32', precision):
        assert main(['upscale', '-i', str(photo_folder / 'deep.png'), '-o', str(tmp_path / name), '--model',
                     str(yaml_path), '--weights', str(checkpoint), '--precision', name, '--device', 'cpu']) == 0
        results[name] = _read(tmp_path / name / 'deep.png').astype(np.float64) / 65535
    assert np.abs(results[precision] - results['fp32']).max() < tolerance


def test_input_is_never_overwritten(tiny_checkpoint, photo_folder, capsys):
    checkpoint, yaml_path, _ = tiny_checkpoint
    before = {path.name: path.read_bytes() for path in photo_folder.iterdir()}
    assert main(['upscale', '-i', str(photo_folder), '-o', str(photo_folder / '.'), '--model', str(yaml_path),
                 '--weights', str(checkpoint)]) != 0
    assert 'refusing to overwrite the input' in capsys.readouterr().err
    assert {path.name: path.read_bytes() for path in photo_folder.iterdir()} == before


def test_failed_write_keeps_previous_output(tmp_path, monkeypatch):
    target = tmp_path / 'result.png'
    target.write_bytes(b'previous result')

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, 'replace', interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_image(np.zeros((4, 4, 3), np.uint8), target)
    assert target.read_bytes() == b'previous result'
    assert [path.name for path in tmp_path.iterdir()] == ['result.png']


def _run_expecting_error(capsys, arguments):
    code = main(['upscale', *arguments])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1 and err.startswith('basicsr upscale: error: '), err
    return err


def test_bad_inputs_give_one_line_errors(tiny_checkpoint, photo_folder, tmp_path, capsys):
    checkpoint, yaml_path, _ = tiny_checkpoint
    out = str(tmp_path / 'out')
    common = ['-o', out, '--model', str(yaml_path), '--weights', str(checkpoint)]

    assert 'input not found' in _run_expecting_error(capsys, ['-i', str(tmp_path / 'missing.png'), *common])
    (tmp_path / 'broken.png').write_bytes(b'not a png')
    assert 'cannot decode image' in _run_expecting_error(capsys, ['-i', str(tmp_path / 'broken.png'), *common])
    (tmp_path / 'empty').mkdir()
    assert 'no images' in _run_expecting_error(capsys, ['-i', str(tmp_path / 'empty'), *common])

    image = ['-i', str(photo_folder / 'rgb.png'), '-o', out]
    torch.save({'params': build_preset('ESC-light', scale=4).state_dict()}, tmp_path / 'light.pth')
    message = _run_expecting_error(
        capsys, [*image, '--model', str(yaml_path), '--weights', str(tmp_path / 'light.pth')])
    assert 'does not fit the network' in message and 'it is ESC-light x4' in message
    assert 'checkpoint not found' in _run_expecting_error(
        capsys, [*image, '--model', 'ESC', '--weights', str(tmp_path / 'none.pth')])
    assert 'unknown ESC preset' in _run_expecting_error(
        capsys, [*image, '--model', 'ESC-huge', '--weights', str(checkpoint)])
    assert 'trained for x2' in _run_expecting_error(
        capsys, [*image, '--model', str(yaml_path), '--weights', str(checkpoint), '--scale', '4'])


@pytest.mark.slow
def test_checkpoint_with_code_is_refused_by_the_command(tiny_checkpoint, photo_folder, tmp_path):
    _, yaml_path, network = tiny_checkpoint
    marker = tmp_path / 'code_ran'
    torch.save({'params': network.state_dict(), 'extra': RunsCode(marker)}, tmp_path / 'evil.pth')
    result = subprocess.run([sys.executable, '-m', 'esc_arch.cli', 'upscale', '-i', str(photo_folder / 'rgb.png'),
                             '-o', str(tmp_path / 'out'), '--model', str(yaml_path), '--weights',
                             str(tmp_path / 'evil.pth')], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f'basicsr upscale: error: {tmp_path / "evil.pth"} was refused: loading it would run arbitrary code '
        '(it contains io.open). Only checkpoints of plain tensors are loaded; if you trust the file, '
        're-save just its state dict']
    assert not marker.exists() and not (tmp_path / 'out').exists()


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


def test_upscale_refuses_a_float_image_with_nan_pixels(tiny_checkpoint, tmp_path, capsys):
    image = np.random.default_rng(0).random((10, 12, 3)).astype(np.float32)
    image[3, 4, 1] = np.nan
    image[5, 5, 0] = np.inf
    cv2.imwrite(str(tmp_path / 'float.tif'), image)
    one_line_error(capsys, upscale_arguments(tiny_checkpoint, tmp_path / 'float.tif', tmp_path / 'out'),
                   f'{tmp_path / "float.tif"} has 2 NaN/inf pixel value(s)')
    assert not (tmp_path / 'out').exists() or not os.listdir(tmp_path / 'out')


def test_upscale_applies_the_exif_orientation_of_a_jpeg(tiny_checkpoint, tmp_path, capsys):
    exif_image(tmp_path / 'portrait.jpg', 6)  # stored 48 wide and 24 high, displayed 24 wide and 48 high
    assert main(upscale_arguments(tiny_checkpoint, tmp_path / 'portrait.jpg', tmp_path / 'out')) == 0
    assert cv2.imread(str(tmp_path / 'out' / 'portrait.jpg'), cv2.IMREAD_UNCHANGED).shape == (96, 48, 3)
    np.testing.assert_array_equal(read_image(tmp_path / 'portrait.jpg'),
                                  cv2.imread(str(tmp_path / 'portrait.jpg'), cv2.IMREAD_COLOR))


def test_png_bomb_is_refused_from_its_header_and_the_folder_run_goes_on(tiny_checkpoint, tmp_path, capsys):
    folder = image_folder(tmp_path / 'in', [(12, 10)])
    bomb = folder / 'bomb.png'
    bomb.write_bytes(png_declaring(60000, 60000))
    assert bomb.stat().st_size < 4096
    message = f'{bomb} is 60000x60000 pixels, more than the limit of 178,956,970'
    assert main(upscale_arguments(tiny_checkpoint, folder, tmp_path / 'out')) == 1
    error = capsys.readouterr().err
    assert error == f'basicsr upscale: error: {message} (raise it with --max-pixels if the image is genuine)\n'
    assert os.listdir(tmp_path / 'out') == ['img0.png']
    one_line_error(capsys, upscale_arguments(tiny_checkpoint, bomb, tmp_path / 'out2'), message)


def test_single_file_upscale_errors_exit_2_folder_errors_exit_1(tiny_checkpoint, tmp_path, capsys):
    folder = image_folder(tmp_path / 'in', [(12, 10)])
    (folder / 'broken.png').write_bytes(b'not a png')
    one_line_error(capsys, upscale_arguments(tiny_checkpoint, folder / 'broken.png', tmp_path / 'out'),
                   f'cannot decode image {folder / "broken.png"}', code=2)
    one_line_error(capsys, upscale_arguments(tiny_checkpoint, folder, tmp_path / 'out'),
                   f'cannot decode image {folder / "broken.png"}', code=1)


def test_only_the_first_frame_of_an_animation_is_used_with_a_notice(tiny_checkpoint, tmp_path, capsys):
    from PIL import Image

    frames = [Image.fromarray(smooth_image(10, 12, seed=seed)) for seed in range(3)]
    frames[0].save(tmp_path / 'anim.png', save_all=True, append_images=frames[1:])
    assert main(upscale_arguments(tiny_checkpoint, tmp_path / 'anim.png', tmp_path / 'out')) == 0
    assert f'basicsr upscale: note: {tmp_path / "anim.png"} has 3 frames; only the first is used' in \
        capsys.readouterr().err
    assert cv2.imread(str(tmp_path / 'out' / 'anim.png')).shape == (20, 24, 3)
