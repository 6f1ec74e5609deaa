"""``basicsr upscale``: outputs planned before writing, --overwrite, names (--suffix, --ext), --outscale,
release names for --weights, bounded scales and outputs, write errors and skipped links, light imports."""
import ast
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import smooth_image, upscale_arguments

from esc_arch.archs import build_preset
from esc_arch.cli import main
from esc_arch.errors import OutputError
from esc_arch.images import read_image
from esc_arch.upscale_outputs import find_inputs, plan_outputs

HEIGHT, WIDTH = 12, 18


@pytest.fixture
def folder(tmp_path):
    """Two small images: a.png (colour) and b.jpg."""
    folder = tmp_path / 'in'
    folder.mkdir()
    cv2.imwrite(str(folder / 'a.png'), smooth_image(HEIGHT, WIDTH))
    cv2.imwrite(str(folder / 'b.jpg'), smooth_image(HEIGHT, WIDTH, seed=1))
    return folder


def _upscale(checkpoint, *arguments):
    return main(['upscale', '--weights', str(checkpoint), *map(str, arguments)])


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith('basicsr upscale: error: '), err
    return err


def _snapshot(folder):
    return {path.relative_to(folder): path.read_bytes() for path in sorted(folder.rglob('*')) if path.is_file()}


# Planning

def test_plan_names_outputs_and_comparisons(tmp_path):
    out = tmp_path / 'out'
    jobs = plan_outputs([Path('x/a.png'), Path('x/b.jpg')], out, compare=True)
    assert [(job.target.name, job.comparison.name) for job in jobs] == [('a.png', 'a.png'), ('b.jpg', 'b.png')]
    assert all(job.comparison.parent == out / 'comparisons' for job in jobs)
    jobs = plan_outputs([Path('x/a.png'), Path('x/a.jpg')], out, compare=True)  # one stem: whole names
    assert [job.comparison.name for job in jobs] == ['a.png.png', 'a.jpg.png']
    jobs = plan_outputs([Path('x/a.tif')], out, suffix='out', extension='webp')
    assert jobs[0].target == out / 'a_out.webp' and jobs[0].comparison is None


def test_plan_refuses_two_inputs_writing_one_output(tmp_path):
    with pytest.raises(OutputError, match='would both be written to .*a.png'):
        plan_outputs([Path('x/a.png'), Path('x/a.jpg')], tmp_path, extension='png')


def test_plan_refuses_existing_outputs_without_overwrite(tmp_path):
    (tmp_path / 'out' / 'comparisons').mkdir(parents=True)
    (tmp_path / 'out' / 'comparisons' / 'a.png').write_bytes(b'kept')
    with pytest.raises(OutputError, match=r'comparisons/a.png exists: pass --overwrite'):
        plan_outputs([Path('x/a.png')], tmp_path / 'out', compare=True)
    assert plan_outputs([Path('x/a.png')], tmp_path / 'out', compare=True, overwrite=True)
    os.symlink(tmp_path / 'nowhere', tmp_path / 'out' / 'b.png')  # a dangling link is an existing output too
    with pytest.raises(OutputError, match='b.png exists'):
        plan_outputs([Path('x/b.png')], tmp_path / 'out')


def test_output_linked_to_an_input_is_refused_even_with_overwrite(tmp_path):
    source = tmp_path / 'in' / 'a.png'
    source.parent.mkdir()
    source.write_bytes(b'input')
    (tmp_path / 'hard').mkdir()
    os.link(source, tmp_path / 'hard' / 'a.png')  # one file under two names
    with pytest.raises(OutputError, match='refusing to overwrite the input .*in/a.png'):
        plan_outputs([source], tmp_path / 'hard', overwrite=True)
    (tmp_path / 'soft').mkdir()
    os.symlink(source, tmp_path / 'soft' / 'b.png')  # the output b.png of x/b.png would replace a.png's content
    with pytest.raises(OutputError, match='refusing to overwrite the input .*in/a.png .*soft/b.png'):
        plan_outputs([source, Path('x/b.png')], tmp_path / 'soft', overwrite=True)


def test_comparison_that_would_replace_another_input_is_refused(tiny_checkpoint, tmp_path, capsys):
    """The issue's case: input X/comparisons/ holds b.png and b.png.png, output X, --compare."""
    checkpoint, _, _ = tiny_checkpoint
    inputs = tmp_path / 'X' / 'comparisons'
    inputs.mkdir(parents=True)
    for name in ('b.png', 'b.png.png'):
        cv2.imwrite(str(inputs / name), smooth_image(HEIGHT, WIDTH))
    before = _snapshot(tmp_path / 'X')
    for overwrite in ([], ['--overwrite']):
        assert _upscale(checkpoint, '-i', inputs, '-o', tmp_path / 'X', '--compare', *overwrite) == 2
        assert 'refusing to overwrite the input' in _one_error_line(capsys)
        assert _snapshot(tmp_path / 'X') == before  # nothing written, not even the outputs planned first


def test_existing_outputs_are_kept_unless_overwrite(tiny_checkpoint, folder, tmp_path, capsys):
    checkpoint, _, _ = tiny_checkpoint
    out = tmp_path / 'out'
    assert _upscale(checkpoint, '-i', folder, '-o', out, '--compare') == 0
    first = _snapshot(out)
    assert sorted(map(str, first)) == ['a.png', 'b.jpg', 'comparisons/a.png', 'comparisons/b.png']
    (out / 'a.png').write_bytes(b'the user edited this')
    before = _snapshot(out)
    assert _upscale(checkpoint, '-i', folder, '-o', out, '--compare') == 2
    assert 'exists (and 3 more output(s)): pass --overwrite' in _one_error_line(capsys)
    assert _snapshot(out) == before
    assert _upscale(checkpoint, '-i', folder, '-o', out, '--compare', '--overwrite') == 0
    assert _snapshot(out) == first


def test_input_folder_as_output_is_refused_even_with_overwrite(tiny_checkpoint, folder, capsys):
    checkpoint, _, _ = tiny_checkpoint
    before = _snapshot(folder)
    assert _upscale(checkpoint, '-i', folder, '-o', folder, '--overwrite') == 2
    assert 'refusing to overwrite the input' in _one_error_line(capsys)
    assert _snapshot(folder) == before


# Names, formats, sizes

def test_suffix_ext_quality_and_a_line_per_image(tiny_checkpoint, folder, tmp_path, capsys):
    checkpoint, _, _ = tiny_checkpoint
    for quality in (20, 95):
        out = tmp_path / f'q{quality}'
        assert _upscale(checkpoint, '-i', folder, '-o', out, '--suffix', 'x2', '--ext', 'jpg',
                        '--quality', quality) == 0
        assert sorted(path.name for path in out.iterdir()) == ['a_x2.jpg', 'b_x2.jpg']
        lines = capsys.readouterr().out.splitlines()
        assert [line.split(' in ')[0] for line in lines[:2]] == [
            f'a.png: {WIDTH}x{HEIGHT} -> {2 * WIDTH}x{2 * HEIGHT} -> a_x2.jpg',
            f'b.jpg: {WIDTH}x{HEIGHT} -> {2 * WIDTH}x{2 * HEIGHT} -> b_x2.jpg']
        assert lines[-1].startswith('upscaled 2 of 2 image(s) x2')
    assert (tmp_path / 'q20' / 'a_x2.jpg').stat().st_size < (tmp_path / 'q95' / 'a_x2.jpg').stat().st_size
    assert _upscale(checkpoint, '-i', folder / 'a.png', '-o', tmp_path / 'webp', '--ext', 'webp') == 0
    assert cv2.imread(str(tmp_path / 'webp' / 'a.webp')).shape == (2 * HEIGHT, 2 * WIDTH, 3)


def test_jpeg_of_an_image_with_alpha_is_refused(tiny_checkpoint, tmp_path, capsys):
    checkpoint, _, _ = tiny_checkpoint
    cv2.imwrite(str(tmp_path / 'rgba.png'), smooth_image(HEIGHT, WIDTH, channels=4))
    assert _upscale(checkpoint, '-i', tmp_path / 'rgba.png', '-o', tmp_path / 'out', '--ext', 'jpg') == 2
    assert 'alpha channel, which JPEG cannot hold' in _one_error_line(capsys)
    assert not (tmp_path / 'out').exists() or not list((tmp_path / 'out').iterdir())


@pytest.mark.parametrize('outscale, interpolation', [(3, cv2.INTER_LANCZOS4), (1.5, cv2.INTER_AREA)])
def test_outscale_resizes_the_network_output(tiny_checkpoint, folder, tmp_path, outscale, interpolation):
    checkpoint, _, _ = tiny_checkpoint
    assert _upscale(checkpoint, '-i', folder / 'a.png', '-o', tmp_path / 'x2') == 0
    assert _upscale(checkpoint, '-i', folder / 'a.png', '-o', tmp_path / 'out', '--outscale', outscale) == 0
    result = cv2.imread(str(tmp_path / 'out' / 'a.png'))
    size = (round(WIDTH * outscale), round(HEIGHT * outscale))
    assert result.shape == (size[1], size[0], 3)
    expected = cv2.resize(cv2.imread(str(tmp_path / 'x2' / 'a.png')), size, interpolation=interpolation)
    assert np.abs(result.astype(int) - expected).max() <= 1  # the x2 output resized (from its unrounded values)


# Bounds

@pytest.mark.parametrize('option, value', [('--scale', '1000000'), ('--scale', '1e308'), ('--scale', '33'),
                                           ('--outscale', '1000'), ('--scale', 'inf')])
def test_scale_is_bounded_before_anything_is_loaded(tmp_path, capsys, option, value):
    with pytest.raises(SystemExit) as exit_info:
        main(['upscale', '-i', str(tmp_path / 'none.png'), '-o', str(tmp_path / 'out'), '--weights', 'none.pth',
              option, value])
    assert exit_info.value.code == 2
    assert f'{option}: must be at most 32, got {value}' in capsys.readouterr().err
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('header_readable', [True, False])
def test_max_pixels_bounds_the_output(tiny_checkpoint, folder, tmp_path, capsys, monkeypatch, header_readable):
    checkpoint, _, _ = tiny_checkpoint
    if header_readable:  # checked from the header: the image is not even decoded
        monkeypatch.setattr('esc_arch.images.read_image', lambda *args, **kwargs: pytest.fail('decoded'))
    else:  # checked once decoded, before the network runs
        monkeypatch.setattr('esc_arch.images.read_header', lambda data: None)
        monkeypatch.setattr('esc_arch.inference.upscale_image', lambda *args: pytest.fail('upscaled'))
    limit = HEIGHT * WIDTH * 2  # the input fits, its x2 output (4x the pixels) does not
    assert _upscale(checkpoint, '-i', folder / 'a.png', '-o', tmp_path / 'out', '--max-pixels', limit) == 2
    assert f'the output would be {2 * WIDTH}x{2 * HEIGHT} pixels, more than the limit of {limit}' in \
        _one_error_line(capsys)
    assert not (tmp_path / 'out').exists() or not list((tmp_path / 'out').iterdir())


# Write errors and skipped entries

def test_unwritable_output_is_one_line_without_leftovers(tiny_checkpoint, folder, tmp_path, capsys, monkeypatch):
    checkpoint, _, _ = tiny_checkpoint
    out = tmp_path / 'out'
    out.mkdir()
    real_write_bytes = Path.write_bytes

    def read_only(path, data):
        if path.parent == out:
            raise PermissionError(13, 'Permission denied', str(path))
        return real_write_bytes(path, data)

    def unlink_fails(path, missing_ok=False):
        raise PermissionError(13, 'Permission denied', str(path))  # the clean-up fails as well

    monkeypatch.setattr(Path, 'write_bytes', read_only)
    monkeypatch.setattr(Path, 'unlink', unlink_fails)
    assert _upscale(checkpoint, '-i', folder, '-o', out) == 2
    err = _one_error_line(capsys)
    assert 'cannot write' in err and 'Permission denied' in err
    assert list(out.iterdir()) == []


def test_broken_links_in_the_input_folder_are_reported(tmp_path):
    folder = tmp_path / 'in'
    folder.mkdir()
    cv2.imwrite(str(folder / 'ok.png'), smooth_image(HEIGHT, WIDTH))
    os.symlink(folder / 'missing.png', folder / 'dangling.png')
    os.symlink(folder / 'loop.png', folder / 'loop.png')
    (folder / 'sub.png').mkdir()  # a folder with an image's name: skipped silently
    notices = []
    assert find_inputs(folder, ('.png', ), notify=notices.append) == [folder / 'ok.png']
    assert notices == [f'skipped {folder / "dangling.png"}: dangling symbolic link (its target does not exist)',
                       f'skipped {folder / "loop.png"}: symbolic link loop']


def test_broken_links_are_noted_by_the_command(tiny_checkpoint, folder, tmp_path, capsys):
    checkpoint, _, _ = tiny_checkpoint
    os.symlink(folder / 'missing.png', folder / 'c.png')
    assert _upscale(checkpoint, '-i', folder, '-o', tmp_path / 'out') == 0
    assert f'basicsr upscale: note: skipped {folder / "c.png"}: dangling symbolic link' in capsys.readouterr().err


# --weights NAME

def test_weights_by_release_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cv2.imwrite('small.png', smooth_image(8, 8))
    assert main(['upscale', '-i', 'small.png', '-o', 'out', '--weights', 'ESC_light_X4']) == 2
    assert 'download it with "basicsr download ESC_light_X4.pth"' in _one_error_line(capsys)
    Path('experiments/pretrained_models').mkdir(parents=True)
    torch.save({'params_ema': build_preset('ESC-light', scale=4).state_dict()},
               'experiments/pretrained_models/ESC_light_X4.pth')
    assert main(['upscale', '-i', 'small.png', '-o', 'out', '--weights', 'esc_light_x4', '--compare']) == 0
    assert cv2.imread('out/small.png').shape == (32, 32, 3)


# Fast command line (applied to upscale)

def test_upscale_command_module_imports_no_heavy_module_at_the_top():
    import esc_arch.cli.image_folders
    import esc_arch.cli.upscale
    import esc_arch.upscale_outputs

    allowed = ('esc_arch.cli', 'esc_arch.errors', 'esc_arch.upscale_outputs', 'esc_arch.cli.image_folders')
    for module in (esc_arch.cli.upscale, esc_arch.cli.image_folders, esc_arch.upscale_outputs):
        tree = ast.parse(Path(module.__file__).read_text())
        for node in tree.body:  # top level only: imports inside functions run when the command runs
            if isinstance(node, ast.ImportFrom):
                assert node.module in allowed or node.module.split('.')[0] in sys.stdlib_module_names, node.module
            elif isinstance(node, ast.Import):
                assert all(alias.name.split('.')[0] in sys.stdlib_module_names for alias in node.names)


def test_gray_alpha_is_written_back_as_gray_alpha(tiny_checkpoint, tmp_path, capsys):
    from PIL import Image

    pixels = np.dstack([smooth_image(10, 12, channels=1)[..., 0], np.full((10, 12), 200, np.uint8)])
    (tmp_path / 'in').mkdir()
    Image.fromarray(pixels, 'LA').save(tmp_path / 'in' / 'la.png')
    assert read_image(tmp_path / 'in' / 'la.png').shape == (10, 12, 2)
    assert main(upscale_arguments(tiny_checkpoint, tmp_path / 'in' / 'la.png', tmp_path / 'out')) == 0
    with Image.open(tmp_path / 'out' / 'la.png') as result:
        assert result.mode == 'LA' and result.size == (24, 20)
        assert (np.asarray(result)[..., 1] == 200).all()
    assert main(['make-lr', '-i', str(tmp_path / 'in'), '-o', str(tmp_path / 'lr'), '--scale', '2',
                 '--workers', '1']) == 0
    with Image.open(tmp_path / 'lr' / 'X2' / 'lax2.png') as result:
        assert result.mode == 'LA' and result.size == (6, 5)
