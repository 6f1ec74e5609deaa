"""Data preparation commands: ``basicsr make-lr``, ``extract-subimages`` and ``make-lmdb``."""
import os
from pathlib import Path

import cv2
import lmdb
import numpy as np
import pytest
from helpers import exif_image, image_folder, one_line_error, png_declaring

from esc_arch.cli import main
from esc_arch.errors import ImageError
from esc_arch.images import read_image

from basicsr.utils import imfrombytes  # noqa: E402  (after esc_arch, which makes basicsr importable)


def random_images(folder, sizes, suffix=''):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = {}
    for index, (height, width) in enumerate(sizes):
        images[f'img{index}'] = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f'img{index}{suffix}.png'), images[f'img{index}'])
    return images


def test_make_lr_reproduces_the_set5_benchmark_files(datasets_dir, tmp_path):
    assert main(['make-lr', '-i', str(datasets_dir / 'Set5' / 'HR'), '-o', str(tmp_path / 'LR_bicubic'),
                 '--workers', '2']) == 0
    for scale in (2, 3, 4):
        stored_folder = datasets_dir / 'Set5' / 'LR_bicubic' / f'X{scale}'
        assert sorted(os.listdir(tmp_path / 'LR_bicubic' / f'X{scale}')) == sorted(os.listdir(stored_folder))
        for name in os.listdir(stored_folder):
            made = cv2.imread(str(tmp_path / 'LR_bicubic' / f'X{scale}' / name), cv2.IMREAD_UNCHANGED)
            np.testing.assert_array_equal(made, cv2.imread(str(stored_folder / name), cv2.IMREAD_UNCHANGED))


def test_make_lr_keeps_gray_images_gray_and_modcrops(tmp_path):
    (tmp_path / 'hr').mkdir()
    cv2.imwrite(str(tmp_path / 'hr' / 'gray.png'), np.full((10, 7), 200, np.uint8))
    assert main(['make-lr', '-i', str(tmp_path / 'hr'), '-o', str(tmp_path / 'lr'), '--scale', '3', '--workers',
                 '1']) == 0
    made = cv2.imread(str(tmp_path / 'lr' / 'X3' / 'grayx3.png'), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(made, np.full((3, 2), 200, np.uint8))


def test_make_lr_refuses_to_overwrite_and_names_missing_folders(tmp_path, capsys):
    random_images(tmp_path / 'hr', [(8, 8)])
    (tmp_path / 'lr' / 'X2').mkdir(parents=True)
    (tmp_path / 'lr' / 'X2' / 'mine.png').write_bytes(b'keep me')
    one_line_error(capsys, ['make-lr', '-i', str(tmp_path / 'hr'), '-o', str(tmp_path / 'lr'), '--scale', '2'],
                   f'--output: {tmp_path / "lr" / "X2"} already exists and is not empty')
    assert os.listdir(tmp_path / 'lr' / 'X2') == ['mine.png']
    one_line_error(capsys, ['make-lr', '-i', str(tmp_path / 'nothing'), '-o', str(tmp_path / 'new')],
                   f'--input: folder not found: {tmp_path / "nothing"}')


def test_extract_subimages_follows_basicsr_and_pairs_lr_names(tmp_path):
    hr = random_images(tmp_path / 'hr', [(100, 70)])['img0']
    lr = random_images(tmp_path / 'lr', [(50, 35)], suffix='x2')['img0']
    sizes = ['--crop-size', '40', '--step', '20', '--thresh-size', '4']
    assert main(['extract-subimages', '-i', str(tmp_path / 'hr'), '-o', str(tmp_path / 'hr_sub'), *sizes,
                 '--workers', '1']) == 0
    assert main(['extract-subimages', '-i', str(tmp_path / 'lr'), '-o', str(tmp_path / 'lr_sub'), *sizes,
                 '--scale', '2', '--workers', '2']) == 0
    # rows start at 0, 20, 40, 60 (60 + 40 = 100, none left); columns at 0, 20 and, as 70 - 60 = 10 > 4, 30
    corners = [(top, left) for top in (0, 20, 40, 60) for left in (0, 20, 30)]
    names = [f'img0_s{index:03d}.png' for index in range(1, len(corners) + 1)]
    assert sorted(os.listdir(tmp_path / 'hr_sub')) == sorted(os.listdir(tmp_path / 'lr_sub')) == names
    for name, (top, left) in zip(names, corners):
        np.testing.assert_array_equal(cv2.imread(str(tmp_path / 'hr_sub' / name)), hr[top:top + 40, left:left + 40])
        np.testing.assert_array_equal(cv2.imread(str(tmp_path / 'lr_sub' / name)),
                                      lr[top // 2:top // 2 + 20, left // 2:left // 2 + 20])


def test_extract_subimages_errors(tmp_path, capsys):
    random_images(tmp_path / 'hr', [(30, 30)])
    one_line_error(capsys, ['extract-subimages', '-i', str(tmp_path / 'hr'), '-o', str(tmp_path / 'sub'),
                            '--crop-size', '40', '--workers', '1'],
                   f'{tmp_path / "hr" / "img0.png"}: 30x30 image is smaller than the crop size 40')
    one_line_error(capsys, ['extract-subimages', '-i', str(tmp_path / 'hr'), '-o', str(tmp_path / 'sub2'),
                            '--crop-size', '30', '--step', '15', '--scale', '4'],
                   '--crop-size 30 must be a non-negative multiple of --scale 4')


def read_lmdb(path, key):
    with lmdb.open(str(path), readonly=True, lock=False) as environment, environment.begin() as transaction:
        return imfrombytes(transaction.get(key.encode()), flag='unchanged')


def test_make_lmdb_writes_meta_info_and_replaces_only_when_asked(tmp_path, capsys):
    first = random_images(tmp_path / 'a', [(12, 10), (8, 8)])
    second = random_images(tmp_path / 'b', [(6, 6)])
    target = tmp_path / 'out' / 'train.lmdb'
    assert main(['make-lmdb', '-i', str(tmp_path / 'a'), '-o', str(target), '--workers', '2']) == 0
    assert (target / 'meta_info.txt').read_text().splitlines() == ['img0.png (12,10,3) 1', 'img1.png (8,8,3) 1']
    np.testing.assert_array_equal(read_lmdb(target, 'img0'), first['img0'])

    one_line_error(capsys, ['make-lmdb', '-i', str(tmp_path / 'b'), '-o', str(target)],
                   f'--output: {target} already exists; pass --overwrite to replace it')
    assert (target / 'meta_info.txt').read_text().startswith('img0.png (12,10,3)')

    assert main(['make-lmdb', '-i', str(tmp_path / 'b'), '-o', str(target), '--overwrite', '--workers', '1']) == 0
    assert (target / 'meta_info.txt').read_text().splitlines() == ['img0.png (6,6,3) 1']
    with lmdb.open(str(target), readonly=True, lock=False) as environment:
        assert environment.stat()['entries'] == 1
    np.testing.assert_array_equal(read_lmdb(target, 'img0'), second['img0'])
    assert sorted(os.listdir(tmp_path / 'out')) == ['train.lmdb']  # no temporary folder left


@pytest.mark.parametrize('output, message', [
    ('train', '--output must end with .lmdb'),
    ('x.lmdb', '--input: no images'),
])
def test_make_lmdb_errors(tmp_path, capsys, output, message):
    (tmp_path / 'empty').mkdir()
    one_line_error(capsys, ['make-lmdb', '-i', str(tmp_path / 'empty'), '-o', str(tmp_path / output)], message)
    assert not (tmp_path / output).exists()


@pytest.mark.parametrize('scale', ['0', '-2'])
def test_extract_subimages_refuses_a_scale_below_1(tmp_path, capsys, scale):
    random_images(tmp_path / 'hr', [(40, 40)])
    one_line_error(capsys, ['extract-subimages', '-i', str(tmp_path / 'hr'), '-o', str(tmp_path / 'sub'),
                            '--crop-size', '20', '--step', '20', '--scale', scale, '--workers', '1'],
                   f'--scale must be at least 1; got {scale}')
    assert not (tmp_path / 'sub').exists()


def test_make_lmdb_refuses_a_file_as_output_even_with_overwrite(tmp_path, capsys):
    random_images(tmp_path / 'a', [(8, 8)])
    target = tmp_path / 'train.lmdb'
    target.write_bytes(b'not an lmdb')
    one_line_error(capsys, ['make-lmdb', '-i', str(tmp_path / 'a'), '-o', str(target), '--overwrite',
                            '--workers', '1'], f'--output: {target} exists and is not a folder')
    assert target.read_bytes() == b'not an lmdb'
    assert sorted(os.listdir(tmp_path)) == ['a', 'train.lmdb']  # nothing built beside it


def test_image_folders_list_and_read(tmp_path):
    """One extension list and one reader for every command: bmp included, folders and hidden files skipped,
    unreadable files and unsupported pixel types refused in one line."""
    from esc_arch.images import IMAGE_EXTENSIONS, list_images
    from esc_arch.upscale_outputs import find_inputs

    folder = tmp_path / 'images'
    folder.mkdir()
    deep = np.arange(5 * 6 * 3, dtype=np.uint16).reshape(5, 6, 3) * 1000
    cv2.imwrite(str(folder / 'deep.png'), deep)
    cv2.imwrite(str(folder / 'gray.bmp'), np.full((5, 6), 7, np.uint8))
    cv2.imwrite(str(folder / '.hidden.png'), np.zeros((2, 2), np.uint8))
    (folder / 'folder.png').mkdir()
    (folder / 'notes.txt').write_text('not an image')
    assert list_images(folder, '--input') == ['deep.png', 'gray.bmp']
    assert find_inputs(folder, IMAGE_EXTENSIONS) == [folder / 'deep.png', folder / 'gray.bmp']

    np.testing.assert_array_equal(read_image(folder / 'deep.png'), deep)  # as stored
    assert read_image(str(folder / 'gray.bmp')).shape == (5, 6)
    colour = read_image(folder / 'gray.bmp', color=True)
    assert colour.shape == (5, 6, 3) and colour.dtype == np.uint8 and (colour == 7).all()
    assert read_image(folder / 'deep.png', color=True).dtype == np.uint8

    cv2.imwrite(str(tmp_path / 'double.tif'), np.zeros((3, 3), np.float64))
    for path, message in [(folder / 'folder.png', 'cannot read'), (folder / 'notes.txt', 'cannot decode image'),
                          (tmp_path / 'missing.png', 'cannot read'), (tmp_path / 'double.tif', 'float64 pixels')]:
        with pytest.raises(ImageError, match=message) as error:
            read_image(path)
        assert '\n' not in str(error.value)


def snapshot(folder):
    """Every file under ``folder`` (hidden ones too) with its contents."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(Path(folder).rglob('*'))
            if path.is_file()}


@pytest.mark.parametrize('layout', ['same', 'output-contains-input', 'output-inside-input'])
def test_make_lmdb_refuses_an_output_that_is_contains_or_is_inside_the_input(tmp_path, capsys, layout):
    if layout == 'same':
        source = image_folder(tmp_path / 'images.lmdb', [(12, 10)] * 2)
        output = source
        message = f'--output {output} is the input folder {source}'
    elif layout == 'output-contains-input':
        source = image_folder(tmp_path / 'train.lmdb' / 'images', [(12, 10)] * 2)
        output = tmp_path / 'train.lmdb'
        (output / 'notes.txt').write_text('unrelated')
        message = f'--output {output} contains the input folder {source}'
    else:
        source = image_folder(tmp_path / 'images', [(12, 10)] * 2)
        output = source / 'train.lmdb'
        message = f'--output {output} is inside the input folder {source}'
    before = snapshot(tmp_path)
    one_line_error(capsys, ['make-lmdb', '-i', str(source), '-o', str(output), '--overwrite', '--workers', '1'],
                   message)
    assert snapshot(tmp_path) == before


def test_make_lmdb_overwrite_replaces_only_an_lmdb(tmp_path, capsys):
    source = image_folder(tmp_path / 'images', [(12, 10)] * 2)
    output = tmp_path / 'mine.lmdb'
    output.mkdir()
    (output / 'data.mdb').write_bytes(b'looks like an lmdb')
    (output / 'thesis.tex').write_text('not made by make-lmdb')
    before = snapshot(tmp_path)
    one_line_error(capsys, ['make-lmdb', '-i', str(source), '-o', str(output), '--overwrite', '--workers', '1'],
                   f'--output: {output} is not an LMDB (it holds thesis.tex); --overwrite only replaces an LMDB')
    assert snapshot(tmp_path) == before
    (output / 'thesis.tex').unlink()
    assert main(['make-lmdb', '-i', str(source), '-o', str(output), '--overwrite', '--workers', '1']) == 0
    assert sorted(os.listdir(output)) == ['data.mdb', 'lock.mdb', 'meta_info.txt']


def test_make_lmdb_stores_images_turned_as_training_from_the_folder_reads_them(tmp_path):
    import lmdb

    (tmp_path / 'in').mkdir()
    exif_image(tmp_path / 'in' / 'photo.png', 6)
    assert main(['make-lmdb', '-i', str(tmp_path / 'in'), '-o', str(tmp_path / 'x.lmdb'), '--workers', '1']) == 0
    with lmdb.open(str(tmp_path / 'x.lmdb'), readonly=True, lock=False) as environment, \
            environment.begin() as transaction:
        stored = cv2.imdecode(np.frombuffer(transaction.get(b'photo'), np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(stored, cv2.imread(str(tmp_path / 'in' / 'photo.png'), cv2.IMREAD_COLOR))
    assert (tmp_path / 'x.lmdb' / 'meta_info.txt').read_text() == 'photo.png (48,24,3) 1\n'


@pytest.mark.parametrize('command', [['make-lr', '--scale', '2'], ['extract-subimages', '--crop-size', '8',
                                                                   '--step', '8'], ['make-lmdb']])
def test_data_preparation_refuses_a_bomb_and_writes_nothing(tmp_path, capsys, command):
    folder = image_folder(tmp_path / 'in', [(12, 10)] * 2)
    (folder / 'bomb.png').write_bytes(png_declaring(20000, 20000))  # OpenCV alone would decode its 1.2 GB
    output = tmp_path / ('out.lmdb' if command[0] == 'make-lmdb' else 'out')
    one_line_error(capsys, [command[0], '-i', str(folder), '-o', str(output), *command[1:], '--workers', '1'],
                   f'{folder / "bomb.png"} is 20000x20000 pixels, more than the limit')
    assert os.listdir(tmp_path) == ['in']


def test_make_lr_reports_every_bad_image_leaves_nothing_and_reruns(tmp_path, capsys):
    folder = image_folder(tmp_path / 'in', [(12, 10)] * 3)
    (folder / 'empty.png').write_bytes(b'')
    cv2.imwrite(str(folder / 'deep.png'), np.zeros((8, 8, 3), np.uint16))
    error = one_line_error(capsys, ['make-lr', '-i', str(folder), '-o', str(tmp_path / 'lr'), '--workers', '2'],
                           f'2 images could not be used (listed above); nothing was written to {tmp_path / "lr"}')
    assert f'basicsr make-lr: error: {folder / "deep.png"}: uint16 image; make-lr needs 8-bit images' in error
    assert f'basicsr make-lr: error: cannot decode image {folder / "empty.png"}' in error
    assert os.listdir(tmp_path) == ['in']
    (folder / 'empty.png').unlink()
    (folder / 'deep.png').unlink()
    assert main(['make-lr', '-i', str(folder), '-o', str(tmp_path / 'lr'), '--workers', '1']) == 0
    assert sorted(os.listdir(tmp_path / 'lr')) == ['X2', 'X3', 'X4']
