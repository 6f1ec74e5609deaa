"""Files and images from careless or hostile users: no data loss, no silent wrong results, no resource bombs,
no partial outputs (interruption, full disk, read-only folder), one-line errors (issue 11, items 2, 3, 7, 9)."""
import errno
import os
import signal
import struct
import subprocess
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import one_line_error, smooth_image

from esc_arch.checkpoint import load_state_dict
from esc_arch.cli import main
from esc_arch.errors import CheckpointError, ImageError, OutputError
from esc_arch.images import read_image, write_image

try:
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401
    HAS_ONNX = True
except ImportError:
    HAS_ONNX = False
needs_onnx = pytest.mark.skipif(not HAS_ONNX, reason='needs onnx and onnxruntime')


def write_images(folder, count=2, size=(12, 10)):
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        cv2.imwrite(str(folder / f'img{index}.png'), smooth_image(*size, seed=index))
    return folder


def snapshot(folder):
    """Every file under ``folder`` (hidden ones too) with its contents."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(Path(folder).rglob('*'))
            if path.is_file()}


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


# ---------------------------------------------------------------- data loss


@pytest.mark.parametrize('layout', ['same', 'output-contains-input', 'output-inside-input'])
def test_make_lmdb_refuses_an_output_that_is_contains_or_is_inside_the_input(tmp_path, capsys, layout):
    if layout == 'same':
        source = write_images(tmp_path / 'images.lmdb')
        output = source
        message = f'--output {output} is the input folder {source}'
    elif layout == 'output-contains-input':
        source = write_images(tmp_path / 'train.lmdb' / 'images')
        output = tmp_path / 'train.lmdb'
        (output / 'notes.txt').write_text('unrelated')
        message = f'--output {output} contains the input folder {source}'
    else:
        source = write_images(tmp_path / 'images')
        output = source / 'train.lmdb'
        message = f'--output {output} is inside the input folder {source}'
    before = snapshot(tmp_path)
    one_line_error(capsys, ['make-lmdb', '-i', str(source), '-o', str(output), '--overwrite', '--workers', '1'],
                   message)
    assert snapshot(tmp_path) == before


def test_make_lmdb_overwrite_replaces_only_an_lmdb(tmp_path, capsys):
    source = write_images(tmp_path / 'images')
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


@needs_onnx
def test_export_onnx_replaces_only_an_onnx_model_and_only_when_asked(tiny_checkpoint, tmp_path, capsys):
    checkpoint, yaml_path, _ = tiny_checkpoint
    command = ['export-onnx', '--model', str(yaml_path), '--weights', str(checkpoint), '--no-check']
    other_checkpoint = tmp_path / 'other.pth'
    other_checkpoint.write_bytes(checkpoint.read_bytes())
    one_line_error(capsys, [*command, '-o', str(other_checkpoint)],
                   f'--output {other_checkpoint} exists and is not an ONNX model; refusing to overwrite it')
    assert other_checkpoint.read_bytes() == checkpoint.read_bytes()
    one_line_error(capsys, [*command, '-o', str(tmp_path)], f'--output {tmp_path} is a folder')

    model = tmp_path / 'tiny.onnx'
    assert main([*command, '-o', str(model)]) == 0
    one_line_error(capsys, [*command, '-o', str(model)], f'--output {model} already exists; pass --overwrite')
    os.utime(model, (0, 0))
    assert main([*command, '-o', str(model), '--overwrite']) == 0
    assert model.stat().st_mtime > 0 and sorted(os.listdir(tmp_path)) == sorted(
        ['other.pth', 'tiny.onnx', checkpoint.name, yaml_path.name])


# ---------------------------------------------------------------- silent wrong results


def test_upscale_refuses_a_float_image_with_nan_pixels(tiny_checkpoint, tmp_path, capsys):
    image = np.random.default_rng(0).random((10, 12, 3)).astype(np.float32)
    image[3, 4, 1] = np.nan
    image[5, 5, 0] = np.inf
    cv2.imwrite(str(tmp_path / 'float.tif'), image)
    one_line_error(capsys, upscale_arguments(tiny_checkpoint, tmp_path / 'float.tif', tmp_path / 'out'),
                   f'{tmp_path / "float.tif"} has 2 NaN/inf pixel value(s)')
    assert not (tmp_path / 'out').exists() or not os.listdir(tmp_path / 'out')


def test_non_finite_weights_are_refused_at_load_naming_the_tensor(tiny_checkpoint, tmp_path, capsys):
    checkpoint, yaml_path, network = tiny_checkpoint
    state_dict = network.state_dict()
    state_dict['proj.weight'][0, 0, 0, 0] = float('nan')
    torch.save({'params_ema': state_dict}, tmp_path / 'diverged.pth')
    with pytest.raises(CheckpointError, match=r'diverged.pth holds non-finite weights: proj.weight has 1 NaN/inf'):
        load_state_dict(tmp_path / 'diverged.pth')
    cv2.imwrite(str(tmp_path / 'in.png'), smooth_image(10, 12))
    one_line_error(capsys, ['upscale', '-i', str(tmp_path / 'in.png'), '-o', str(tmp_path / 'out'), '--model',
                            str(yaml_path), '--weights', str(tmp_path / 'diverged.pth')],
                   'holds non-finite weights: proj.weight')


def _exif_image(path, orientation, size=(24, 48)):
    """An image stored ``size`` (height, width) with a distinct corner, tagged with EXIF ``orientation``."""
    from PIL import Image

    pixels = np.zeros((*size, 3), np.uint8)
    pixels[:6, :10] = (255, 0, 0)
    pixels[-3:, :] = (0, 255, 0)
    stored = Image.fromarray(pixels)
    exif = stored.getexif()
    exif[0x0112] = orientation
    stored.save(path, exif=exif)


@pytest.mark.parametrize('orientation', range(1, 9))
def test_images_are_turned_by_their_exif_orientation_as_training_reads_them(tmp_path, orientation):
    """``read_image`` as stored (upscale, make-lr, ...) and BasicSR's reader (OpenCV IMREAD_COLOR) agree."""
    _exif_image(tmp_path / 'photo.png', orientation)
    expected = cv2.imread(str(tmp_path / 'photo.png'), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(read_image(tmp_path / 'photo.png'), expected)
    np.testing.assert_array_equal(read_image(tmp_path / 'photo.png', color=True), expected)


def test_upscale_applies_the_exif_orientation_of_a_jpeg(tiny_checkpoint, tmp_path, capsys):
    _exif_image(tmp_path / 'portrait.jpg', 6)  # stored 48 wide and 24 high, displayed 24 wide and 48 high
    assert main(upscale_arguments(tiny_checkpoint, tmp_path / 'portrait.jpg', tmp_path / 'out')) == 0
    assert cv2.imread(str(tmp_path / 'out' / 'portrait.jpg'), cv2.IMREAD_UNCHANGED).shape == (96, 48, 3)
    np.testing.assert_array_equal(read_image(tmp_path / 'portrait.jpg'),
                                  cv2.imread(str(tmp_path / 'portrait.jpg'), cv2.IMREAD_COLOR))


def test_make_lmdb_stores_images_turned_as_training_from_the_folder_reads_them(tmp_path):
    import lmdb

    (tmp_path / 'in').mkdir()
    _exif_image(tmp_path / 'in' / 'photo.png', 6)
    assert main(['make-lmdb', '-i', str(tmp_path / 'in'), '-o', str(tmp_path / 'x.lmdb'), '--workers', '1']) == 0
    with lmdb.open(str(tmp_path / 'x.lmdb'), readonly=True, lock=False) as environment, \
            environment.begin() as transaction:
        stored = cv2.imdecode(np.frombuffer(transaction.get(b'photo'), np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(stored, cv2.imread(str(tmp_path / 'in' / 'photo.png'), cv2.IMREAD_COLOR))
    assert (tmp_path / 'x.lmdb' / 'meta_info.txt').read_text() == 'photo.png (48,24,3) 1\n'


# ---------------------------------------------------------------- resource bombs


def test_png_bomb_is_refused_from_its_header_and_the_folder_run_goes_on(tiny_checkpoint, tmp_path, capsys):
    folder = write_images(tmp_path / 'in', count=1)
    bomb = folder / 'bomb.png'
    bomb.write_bytes(png_declaring(60000, 60000))
    assert bomb.stat().st_size < 4096
    message = f'{bomb} is 60000x60000 pixels, more than the limit of 178,956,970'
    assert main(upscale_arguments(tiny_checkpoint, folder, tmp_path / 'out')) == 1
    error = capsys.readouterr().err
    assert error == f'basicsr upscale: error: {message} (raise it with --max-pixels if the image is genuine)\n'
    assert os.listdir(tmp_path / 'out') == ['img0.png']
    one_line_error(capsys, upscale_arguments(tiny_checkpoint, bomb, tmp_path / 'out2'), message)


@pytest.mark.parametrize('command', [['make-lr', '--scale', '2'], ['extract-subimages', '--crop-size', '8',
                                                                   '--step', '8'], ['make-lmdb']])
def test_data_preparation_refuses_a_bomb_and_writes_nothing(tmp_path, capsys, command):
    folder = write_images(tmp_path / 'in')
    (folder / 'bomb.png').write_bytes(png_declaring(20000, 20000))  # OpenCV alone would decode its 1.2 GB
    output = tmp_path / ('out.lmdb' if command[0] == 'make-lmdb' else 'out')
    one_line_error(capsys, [command[0], '-i', str(folder), '-o', str(output), *command[1:], '--workers', '1'],
                   f'{folder / "bomb.png"} is 20000x20000 pixels, more than the limit')
    assert os.listdir(tmp_path) == ['in']


def test_max_pixels_is_configurable(tmp_path, capsys):
    cv2.imwrite(str(tmp_path / 'img.png'), smooth_image(30, 40))
    with pytest.raises(ImageError, match='is 40x30 pixels, more than the limit of 1,000'):
        read_image(tmp_path / 'img.png', max_pixels=1000)
    assert read_image(tmp_path / 'img.png', max_pixels=1200).shape == (30, 40, 3)
    folder = write_images(tmp_path / 'in', size=(30, 40))
    one_line_error(capsys, ['make-lr', '-i', str(folder), '-o', str(tmp_path / 'lr'), '--max-pixels', '1000',
                            '--workers', '1'], '2 images could not be used (listed above); nothing was written')
    assert main(['make-lr', '-i', str(folder), '-o', str(tmp_path / 'lr'), '--max-pixels', '1200',
                 '--workers', '1']) == 0


# ---------------------------------------------------------------- smaller


def test_make_lr_reports_every_bad_image_leaves_nothing_and_reruns(tmp_path, capsys):
    folder = write_images(tmp_path / 'in', count=3)
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


def _terminate_self(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.parametrize('command', ['make-lr', 'extract-subimages', 'make-lmdb', 'upscale'])
def test_sigterm_leaves_no_partial_files(tiny_checkpoint, tmp_path, monkeypatch, capsys, command):
    import esc_arch.cli.extract_subimages
    import esc_arch.cli.make_lr
    import esc_arch.data.lmdb_packing

    folder = write_images(tmp_path / 'in', size=(16, 16))
    output = tmp_path / ('out.lmdb' if command == 'make-lmdb' else 'out')
    arguments = writing_command_arguments(command, tiny_checkpoint, folder, output)
    if command == 'make-lmdb':
        monkeypatch.setattr(esc_arch.data.lmdb_packing, 'encode_entry', _terminate_self)  # make-lmdb imports it in run
    else:  # killed after the temporary file of an output is written, before it is renamed
        monkeypatch.setattr(os, 'replace', _terminate_self)
    handler = signal.getsignal(signal.SIGTERM)
    assert main(arguments) == 130
    assert 'interrupted' in capsys.readouterr().err
    assert_nothing_written(tmp_path, output, empty_folder_allowed=command == 'upscale')
    assert sorted(os.listdir(folder)) == ['img0.png', 'img1.png']
    assert signal.getsignal(signal.SIGTERM) is handler


@pytest.mark.slow
def test_sigterm_to_a_parallel_make_lr_removes_its_partial_folders(tmp_path):
    """The real signal, with worker processes: exit code 130 and no ``.X2.partial`` folder left behind."""
    import time

    from helpers import console_script

    folder = tmp_path / 'in'
    folder.mkdir()
    for index in range(24):
        cv2.imwrite(str(folder / f'img{index}.png'), smooth_image(240, 240, seed=index))
    process = subprocess.Popen([console_script(), 'make-lr', '-i', str(folder), '-o', str(tmp_path / 'lr'),
                                '--workers', '2'], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, 'OMP_NUM_THREADS': '1'})
    deadline = time.monotonic() + 120
    while not (tmp_path / 'lr' / '.X2.partial').is_dir() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, error = process.communicate(timeout=120)
    assert process.returncode == 130, error
    assert error.strip().splitlines()[-1].split('\r')[-1] == 'basicsr make-lr: interrupted'
    assert sorted(os.listdir(tmp_path)) == ['in']


def test_single_file_upscale_errors_exit_2_folder_errors_exit_1(tiny_checkpoint, tmp_path, capsys):
    folder = write_images(tmp_path / 'in', count=1)
    (folder / 'broken.png').write_bytes(b'not a png')
    one_line_error(capsys, upscale_arguments(tiny_checkpoint, folder / 'broken.png', tmp_path / 'out'),
                   f'cannot decode image {folder / "broken.png"}', code=2)
    one_line_error(capsys, upscale_arguments(tiny_checkpoint, folder, tmp_path / 'out'),
                   f'cannot decode image {folder / "broken.png"}', code=1)


@pytest.mark.parametrize('command', [['upscale', '--model', 'ESC', '--weights', 'x.pth', '-i', 'a.png', '-o', 'out'],
                                     ['make-lr', '-i', 'in', '-o', 'out'],
                                     ['extract-subimages', '-i', 'in', '-o', 'out'],
                                     ['export-onnx', '--model', 'ESC', '-o', 'x.onnx']])
def test_scale_0_is_refused(tmp_path, monkeypatch, capsys, command):
    monkeypatch.chdir(tmp_path)
    try:
        code = main([*command, '--scale', '0'])
    except SystemExit as exit_:  # refused by argparse
        code = exit_.code
    error = capsys.readouterr().err
    assert code == 2 and '--scale' in error and 'must be at least' in error and 'Traceback' not in error, error
    assert os.listdir(tmp_path) == []


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


def test_only_the_first_frame_of_an_animation_is_used_with_a_notice(tiny_checkpoint, tmp_path, capsys):
    from PIL import Image

    frames = [Image.fromarray(smooth_image(10, 12, seed=seed)) for seed in range(3)]
    frames[0].save(tmp_path / 'anim.png', save_all=True, append_images=frames[1:])
    assert main(upscale_arguments(tiny_checkpoint, tmp_path / 'anim.png', tmp_path / 'out')) == 0
    assert f'basicsr upscale: note: {tmp_path / "anim.png"} has 3 frames; only the first is used' in \
        capsys.readouterr().err
    assert cv2.imread(str(tmp_path / 'out' / 'anim.png')).shape == (20, 24, 3)


# ---------------------------------------------------------------- full disk, read-only folder


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs (the test is skipped where it cannot be mounted)."""
    mount_point = tmp_path / 'disk'
    mount_point.mkdir()
    result = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', str(mount_point)],
                            capture_output=True)
    if result.returncode != 0:
        pytest.skip('cannot mount a tmpfs here (needs root)')
    yield mount_point
    subprocess.run(['umount', '-l', str(mount_point)], check=False)


def _fill(disk):
    with open(disk / 'filler', 'wb') as filler:
        try:
            filler.write(b'\0' * (4 * 2**20))
        except OSError:  # full, as wanted
            pass


@pytest.mark.parametrize('command', ['upscale', 'make-lr', 'extract-subimages', 'make-lmdb'])
@pytest.mark.parametrize('problem', ['full', 'read-only'])
def test_full_or_read_only_disk_is_one_line_and_leaves_nothing(tiny_checkpoint, tmp_path, small_disk, capsys,
                                                               command, problem):
    folder = write_images(tmp_path / 'in', size=(40, 40))
    if problem == 'full':
        _fill(small_disk)
        message = 'No space left on device'
    else:
        subprocess.run(['mount', '-o', 'remount,ro', str(small_disk)], check=True)
        message = 'Read-only file system'
    output = small_disk / ('out.lmdb' if command == 'make-lmdb' else 'out')
    arguments = writing_command_arguments(command, tiny_checkpoint, folder, output)
    if command == 'make-lmdb' and problem == 'full':
        message = f'not enough free space for {output}'  # checked first: LMDB may crash (SIGBUS) on a full disk
    one_line_error(capsys, arguments, message)
    assert_nothing_written(small_disk, output, empty_folder_allowed=command == 'upscale')


def test_write_errors_are_output_errors_and_leave_no_temporary_file(tmp_path, monkeypatch):
    def disk_full(self, data):
        Path.open(self, 'wb').write(data[:10])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, 'write_bytes', disk_full)
    with pytest.raises(OutputError, match=f'cannot write {tmp_path / "x.png"}: No space left on device'):
        write_image(np.zeros((4, 4, 3), np.uint8), tmp_path / 'x.png')
    assert os.listdir(tmp_path) == []


@needs_onnx
def test_export_onnx_write_error_is_one_line(tmp_path, monkeypatch, capsys):
    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch.onnx, 'export', disk_full)
    one_line_error(capsys, ['export-onnx', '--model', 'ESC-light', '--scale', '2', '-o', str(tmp_path / 'x.onnx')],
                   f'cannot write {tmp_path / "x.onnx"}: No space left on device')
    assert os.listdir(tmp_path) == []


@needs_onnx
@pytest.mark.parametrize('opset, reason', [(99, 'Unsupported onnx_opset_version: 99'),
                                           (7, 'ONNX export failed on arange, which is not implemented for opset 7')])
def test_export_onnx_opset_torch_cannot_use_is_one_line(tiny_checkpoint, tmp_path, capsys, opset, reason):
    checkpoint, yaml_path, _ = tiny_checkpoint
    output = tmp_path / 'x.onnx'
    one_line_error(capsys, ['export-onnx', '--model', str(yaml_path), '--weights', str(checkpoint), '-o', str(output),
                            '--opset', str(opset)], f'cannot export with ONNX opset {opset}: {reason}')
    assert sorted(os.listdir(tmp_path)) == ['tiny_ESC.yml', 'tiny_ESC_x2.pth']


@pytest.mark.slow
def test_stop_signal_while_workers_start_lets_them_start_then_stops_them(monkeypatch, capfd):
    """SIGTERM as the pool starts (given to another thread, as tqdm's monitor can take it) acts only once the
    workers have started, and they are all ended: no worker is cut off in its start-up (it would print a traceback)."""
    import multiprocessing
    import threading
    import time

    from esc_arch.cli.image_folders import sigterm_as_interrupt, worker_pool

    context = multiprocessing.get_context('spawn')
    start_pool, pools = context.Pool, []
    send_now = threading.Event()
    sender = threading.Thread(target=lambda: send_now.wait() and os.kill(os.getpid(), signal.SIGTERM))
    sender.start()  # before the pool starts, so that it does not block the signal

    def pool_started_after_a_signal(*args, **kwargs):
        send_now.set()
        sender.join()
        for _ in range(50):  # bytecode boundaries where the handler of the signal can run
            time.sleep(0.002)
        pools.append(start_pool(*args, **kwargs))
        return pools[-1]

    monkeypatch.setattr(context, 'Pool', pool_started_after_a_signal)
    with pytest.raises(KeyboardInterrupt), sigterm_as_interrupt(), worker_pool(2):
        pytest.fail('the signal must stop the block before it runs')
    assert len(pools) == 1 and not any(worker.is_alive() for worker in pools[0]._pool)
    assert 'Traceback' not in capfd.readouterr().err
