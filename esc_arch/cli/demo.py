"""``basicsr demo``: ESC-light x4 trained and tested end to end on a dataset made on the spot.

1. makes ``datasets/demo/`` (under the current directory) from scikit-image's bundled sample
   images: HR = the image cropped to a multiple of 4, LR = MATLAB-style bicubic 1/4 on uint8,
   the way the SR benchmarks were made (an existing ``datasets/demo`` is reused when it
   holds exactly the demo's files, and never changed);
2. runs ``basicsr train -opt options/demo_train_ESC_light_x4.yml``;
3. runs ``basicsr test -opt options/demo_test_ESC_light_x4.yml`` (which logs PSNR/SSIM and
   saves the SR images);
4. prints the PSNR (Y channel, border of 4 pixels cropped) of those SR images and of MATLAB
   bicubic upsampling of the same LR images, and writes ``results/<test name>/comparison.png``:
   per test image, the most detailed crop of the LR input, bicubic, ESC-light and the HR image.

It first applies the thread policy of :mod:`esc_arch.threads` (train and test inherit it through the
environment, so that a machine whose CPUs other programs keep busy slows the demo down without making
it burn CPU time spinning) and prints how long it should take and when it should end.
"""
from __future__ import annotations  # numpy is imported only where the demo needs it

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
from typing import TYPE_CHECKING

from esc_arch.cli import CommandError
from esc_arch.images import read_image
from esc_arch.threads import WAIT_POLICY_VARIABLE, ThreadPolicy, apply_thread_policy

if TYPE_CHECKING:
    import numpy as np

SCALE = 4
DATA_DIR = os.path.join('datasets', 'demo')
TRAIN_OPTIONS = os.path.join('options', 'demo_train_ESC_light_x4.yml')
TEST_OPTIONS = os.path.join('options', 'demo_test_ESC_light_x4.yml')
# Loader names in skimage.data (all shipped inside scikit-image); grayscale ones become RGB.
TRAIN_IMAGES = ('astronaut', 'rocket', 'hubble_deep_field', 'immunohistochemistry', 'camera', 'brick', 'grass',
                'gravel', 'moon', 'coins')
TEST_IMAGES = ('chelsea', 'coffee')
DEFAULT_ITERATIONS = 400  # total_iter of TRAIN_OPTIONS
# Seconds per training iteration and for the rest (three process starts, the data, the test) on an
# idle 2-core CPU (AMD EPYC, torch 2.13): the README's timed run (3m01s for 400 iterations, before the
# thread policy) split by a timed training step (0.33 s). To be re-measured on an idle machine with
# benchmarks/demo_under_load.py (the passive OpenMP waiting may change the per-iteration time).
SECONDS_PER_ITERATION = 0.33
OTHER_SECONDS = 50
REFERENCE_CPUS = 2


def expected_seconds(iterations: int) -> float:
    """How long the demo takes with ``iterations`` training iterations on an idle 2-core CPU."""
    return OTHER_SECONDS + SECONDS_PER_ITERATION * iterations


def minutes(seconds: float) -> str:
    """``seconds`` as ``about N minute(s)``, to the nearest minute (at least one)."""
    count = max(1, round(seconds / 60))
    return f'about {count} minute{"s" * (count != 1)}'


def duration_notice(iterations: int, policy: ThreadPolicy, load: float,
                    now: datetime.datetime | None = None) -> str:
    """The demo's first line: its expected duration, and an ETA scaled by how busy the CPUs are.

    Args:
        iterations (int): Training iterations.
        policy (ThreadPolicy): :func:`~esc_arch.threads.apply_thread_policy`'s result (train and test inherit it).
        load (float): The one-minute load average (processes running or waiting for a CPU).
        now (datetime.datetime): The start time (default: now, local time).
    """
    expected = expected_seconds(iterations)
    # Rough: the demo's threads get their share of the allowed CPUs among the load already there.
    slowdown = max(1.0, (load + policy.threads) / policy.cpus)
    finish = (now or datetime.datetime.now()) + datetime.timedelta(seconds=expected * slowdown)
    source = 'OMP_NUM_THREADS' if policy.user_threads else f'{policy.cpus} CPUs allowed'
    busy = ''
    if slowdown > 1.25:
        busy = f'; the CPUs are busy (load {load:.1f} on {policy.cpus}), so expect {minutes(expected * slowdown)}'
    return (f'The demo takes {minutes(expected)} on an idle {REFERENCE_CPUS}-core CPU ({iterations} training '
            f'iteration{"s" * (iterations != 1)}){busy}; ETA {finish:%H:%M}. Training and testing run with '
            f'{policy.threads} threads each ({source}, OMP_WAIT_POLICY={os.environ.get(WAIT_POLICY_VARIABLE)}); '
            "BasicSR's log lines give an updated eta.")


def training_iterations(args: argparse.Namespace) -> int:
    """``--iterations``, else the training options' ``total_iter`` (:data:`DEFAULT_ITERATIONS` if not a count)."""
    if args.iterations is not None:
        return args.iterations
    from esc_arch.options.loading import load_pipeline_options

    total = load_pipeline_options(args.train_options, ('train',))['train'].get('total_iter')
    return total if isinstance(total, int) and total > 0 else DEFAULT_ITERATIONS  # train reports a bad one


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (f'With the default options the demo takes {minutes(expected_seconds(DEFAULT_ITERATIONS))} on an '
                     f'idle {REFERENCE_CPUS}-core CPU (longer when other programs keep the CPUs busy); it prints its '
                     'expected duration and an ETA when it starts. Run it from the repository root: the default '
                     'options files are paths relative to the current folder, and the data, experiments and '
                     'results folders are made there.')
    parser.add_argument('--train-options', default=TRAIN_OPTIONS, metavar='YML',
                        help=f'training options (default: {TRAIN_OPTIONS}, relative to the current folder)')
    parser.add_argument('--test-options', default=TEST_OPTIONS, metavar='YML',
                        help=f'test options (default: {TEST_OPTIONS})')
    parser.add_argument('--iterations', type=int, default=None, metavar='N',
                        help='training iterations (default: total_iter of the training options)')


def demo_files() -> list[str]:
    """Relative paths of every file the demo dataset holds."""
    files = []
    for split, names in (('train', TRAIN_IMAGES), ('test', TEST_IMAGES)):
        for name in names:
            files.append(os.path.join(split, 'HR', f'{name}.png'))
            files.append(os.path.join(split, 'LR_bicubic', f'X{SCALE}', f'{name}x{SCALE}.png'))
    return sorted(files)


def _files_under(folder: str) -> list[str]:
    return sorted(
        os.path.relpath(os.path.join(root, name), folder) for root, _, names in os.walk(folder) for name in names)


def sample_image(name: str) -> np.ndarray:
    """A scikit-image sample image as uint8 RGB, cropped to a multiple of the scale."""
    import numpy as np
    import skimage.data

    image = getattr(skimage.data, name)()
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    height, width = image.shape[0] // SCALE * SCALE, image.shape[1] // SCALE * SCALE
    return np.ascontiguousarray(image[:height, :width, :3])


def _write_rgb(path: str, image: np.ndarray) -> None:
    from basicsr.utils import imwrite

    imwrite(image[:, :, ::-1], path)  # basicsr/OpenCV write BGR


def _to_uint8(image: np.ndarray) -> np.ndarray:
    import numpy as np

    return np.clip(np.floor(image * 255 + 0.5), 0, 255).astype(np.uint8)


def make_dataset(data_dir: str = DATA_DIR) -> bool:
    """Create the demo dataset at ``data_dir``, or reuse the one there.

    Returns:
        bool: True when it was created, False when an existing one is reused.

    Raises:
        CommandError: ``data_dir`` exists but is not exactly the demo's dataset.
    """
    from esc_arch.data import bicubic_downsample

    if os.path.exists(data_dir):
        if os.path.isdir(data_dir) and _files_under(data_dir) == demo_files():
            return False
        raise CommandError(f'{data_dir} exists and is not the demo dataset; '
                           'move it away (the demo never changes it) and run again')
    parent = os.path.dirname(os.path.abspath(data_dir))
    os.makedirs(parent, exist_ok=True)
    # Built beside its final place and renamed at the end: an interrupted run leaves no
    # half-made folder that a later run would take for the dataset.
    staging = tempfile.mkdtemp(prefix='.demo-', dir=parent)
    try:
        for split, names in (('train', TRAIN_IMAGES), ('test', TEST_IMAGES)):
            for name in names:
                hr = sample_image(name)
                _write_rgb(os.path.join(staging, split, 'HR', f'{name}.png'), hr)
                lr = _to_uint8(bicubic_downsample(hr, SCALE))
                _write_rgb(os.path.join(staging, split, 'LR_bicubic', f'X{SCALE}', f'{name}x{SCALE}.png'), lr)
        os.rename(staging, data_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return True


def _basicsr(*arguments):
    command = [sys.executable, '-m', 'esc_arch.cli', *arguments]
    print('\n$ basicsr ' + ' '.join(arguments), flush=True)
    if subprocess.call(command) != 0:
        raise CommandError(f'"basicsr {" ".join(arguments)}" failed (see its messages above)')


def bicubic_upsample(lr: np.ndarray) -> np.ndarray:
    """MATLAB ``imresize(lr, SCALE, 'bicubic')`` of a uint8 HWC image, rounded to uint8."""
    import torch

    from esc_arch.data import matlab_imresize

    image = torch.from_numpy(lr.copy()).permute(2, 0, 1).double() / 255
    return _to_uint8(matlab_imresize(image, SCALE).permute(1, 2, 0).numpy())


def psnr_table(data_dir: str, sr_dir: str, sr_suffix: str) -> list[tuple[str, float, float]]:
    """PSNR-Y of bicubic and of the SR images in ``sr_dir`` for every demo test image.

    Returns:
        list[tuple[str, float, float]]: ``(image name, bicubic PSNR, SR PSNR)``.
    """
    from basicsr.metrics import calculate_psnr

    rows = []
    for name in TEST_IMAGES:  # uint8 BGR, as basicsr's metrics expect (their Y channel assumes BGR)
        hr = read_image(os.path.join(data_dir, 'test', 'HR', f'{name}.png'), color=True)
        lr = read_image(os.path.join(data_dir, 'test', 'LR_bicubic', f'X{SCALE}', f'{name}x{SCALE}.png'), color=True)
        sr = read_image(os.path.join(sr_dir, f'{name}x{SCALE}_{sr_suffix}.png'), color=True)
        rows.append((name, *(calculate_psnr(result, hr, crop_border=SCALE, test_y_channel=True)
                             for result in (bicubic_upsample(lr), sr))))
    return rows


def write_comparison(path: str, data_dir: str, sr_dir: str, sr_suffix: str,
                     rows: list[tuple[str, float, float]]) -> None:
    """Write the comparison picture: one row per test image, LR | bicubic | ESC-light | HR on one crop.

    Args:
        path (str): The PNG to write.
        data_dir (str): The demo dataset.
        sr_dir (str): Where ``basicsr test`` saved the SR images.
        sr_suffix (str): Their file name suffix.
        rows (list): :func:`psnr_table`'s rows, for the labels.
    """
    from esc_arch.comparison import reference_comparison, stack_rows
    from esc_arch.images import write_image

    pictures = []
    for name, bicubic_psnr, sr_psnr in rows:
        hr = read_image(os.path.join(data_dir, 'test', 'HR', f'{name}.png'), color=True)
        lr = read_image(os.path.join(data_dir, 'test', 'LR_bicubic', f'X{SCALE}', f'{name}x{SCALE}.png'), color=True)
        sr = read_image(os.path.join(sr_dir, f'{name}x{SCALE}_{sr_suffix}.png'), color=True)
        results = {f'bicubic {bicubic_psnr:.2f} dB': bicubic_upsample(lr), f'ESC-light {sr_psnr:.2f} dB': sr}
        pictures.append(reference_comparison(lr, results, hr, SCALE, lr_label=f'{name}: LR input'))
    write_image(stack_rows(pictures), path)


def run(args: argparse.Namespace) -> None:
    from esc_arch.options.loading import TEST_SECTIONS, load_pipeline_options

    for option, path in (('--train-options', args.train_options), ('--test-options', args.test_options)):
        if not os.path.isfile(path):
            raise CommandError(f'options file not found: {path} (run the demo from the repository root, or pass '
                               f'{option})')
    test_options = load_pipeline_options(args.test_options, TEST_SECTIONS)
    if args.iterations is not None and args.iterations < 1:
        raise CommandError('--iterations must be at least 1')

    policy = apply_thread_policy()  # train and test run as child processes: they inherit it
    print(duration_notice(training_iterations(args), policy, os.getloadavg()[0]), flush=True)

    created = make_dataset()
    print(f'{"Made" if created else "Reusing"} the demo dataset in {DATA_DIR}: '
          f'{len(TRAIN_IMAGES)} training and {len(TEST_IMAGES)} test images from scikit-image', flush=True)

    train_arguments = ['train', '-opt', args.train_options]
    if args.iterations is not None:
        train_arguments += ['--force_yml', f'train:total_iter={args.iterations}']
    _basicsr(*train_arguments)
    _basicsr('test', '-opt', args.test_options)

    dataset_name = next(iter(test_options['datasets'].values()))['name']
    sr_dir = os.path.join('results', test_options['name'], 'visualization', dataset_name)
    rows = psnr_table(DATA_DIR, sr_dir, test_options['val'].get('suffix') or test_options['name'])
    print(f'\nx{SCALE} PSNR (dB) on the Y channel, {SCALE}-pixel border cropped, {DATA_DIR}/test:')
    print(f'{"image":<12}{"bicubic":>10}{"ESC-light":>12}')
    for name, bicubic, esc in rows:
        print(f'{name:<12}{bicubic:>10.2f}{esc:>12.2f}')
    mean_bicubic = sum(row[1] for row in rows) / len(rows)
    mean_esc = sum(row[2] for row in rows) / len(rows)
    print(f'{"mean":<12}{mean_bicubic:>10.2f}{mean_esc:>12.2f}   ({mean_esc - mean_bicubic:+.2f} dB)')
    print(f'SR images: {sr_dir}')
    comparison = os.path.join('results', test_options['name'], 'comparison.png')
    write_comparison(comparison, DATA_DIR, sr_dir, test_options['val'].get('suffix') or test_options['name'], rows)
    print(f'Side by side (LR, bicubic, ESC-light, HR; PSNR of the whole image): {comparison}')
