"""``basicsr demo``: its dataset (made, reused, never overwritten), its stated duration, a shortened end-to-end run."""
import argparse
import datetime
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from esc_arch.cli import CommandError, demo
from esc_arch.cli.demo import SCALE, TEST_IMAGES, TRAIN_IMAGES, bicubic_upsample, demo_files, make_dataset
from esc_arch.images import read_image
from esc_arch.options.loading import load_options
from esc_arch.threads import ThreadPolicy

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def demo_data(tmp_path_factory):
    """The demo dataset, made once for this module."""
    folder = tmp_path_factory.mktemp('demo') / 'datasets' / 'demo'
    assert make_dataset(str(folder)) is True
    return folder


def test_dataset_holds_modcropped_hr_and_matlab_bicubic_lr(demo_data):
    from basicsr.utils.matlab_functions import imresize

    assert sorted(str(path.relative_to(demo_data)) for path in demo_data.rglob('*') if path.is_file()) == demo_files()
    assert len(TRAIN_IMAGES) >= 8 and not set(TRAIN_IMAGES) & set(TEST_IMAGES)
    for split, name in [('train', 'astronaut'), ('test', TEST_IMAGES[0])]:
        hr = read_image(str(demo_data / split / 'HR' / f'{name}.png'), color=True)
        lr = read_image(str(demo_data / split / 'LR_bicubic' / f'X{SCALE}' / f'{name}x{SCALE}.png'), color=True)
        assert hr.shape[0] % SCALE == 0 and hr.shape[1] % SCALE == 0
        assert lr.shape == (hr.shape[0] // SCALE, hr.shape[1] // SCALE, 3)
        # basicsr's MATLAB imresize (float; no rounding or saturation between its two passes, which
        # MATLAB does on uint8) agrees within one level except at a few saturated edge pixels
        reference = np.clip(np.floor(imresize(hr / 255., 1 / SCALE) * 255 + 0.5), 0, 255)
        difference = np.abs(lr.astype(int) - reference)
        assert np.mean(difference <= 1) > 0.998 and difference.max() <= 8
        assert np.mean(difference == 0) > 0.85


def test_existing_demo_dataset_is_reused_untouched(demo_data):
    stamps = {path: path.stat().st_mtime_ns for path in demo_data.rglob('*')}
    assert make_dataset(str(demo_data)) is False
    assert {path: path.stat().st_mtime_ns for path in demo_data.rglob('*')} == stamps


@pytest.mark.parametrize('change', ['foreign file', 'missing file'])
def test_other_folder_at_the_demo_path_is_refused_and_left_alone(demo_data, tmp_path, change):
    folder = tmp_path / 'demo'
    shutil.copytree(demo_data, folder)
    if change == 'foreign file':
        (folder / 'train' / 'HR' / 'mine.png').write_bytes(b'user data')
    else:
        (folder / 'test' / 'HR' / f'{TEST_IMAGES[0]}.png').unlink()
    before = sorted(path.relative_to(folder) for path in folder.rglob('*'))
    with pytest.raises(CommandError, match='is not the demo dataset'):
        make_dataset(str(folder))
    assert sorted(path.relative_to(folder) for path in folder.rglob('*')) == before
    assert os.listdir(tmp_path) == ['demo']  # no staging folder left behind


def test_bicubic_baseline_is_matlab_bicubic_upsampling(demo_data):
    from basicsr.utils.matlab_functions import imresize

    lr = read_image(str(demo_data / 'test' / 'LR_bicubic' / f'X{SCALE}' / f'{TEST_IMAGES[0]}x{SCALE}.png'), color=True)
    upsampled = bicubic_upsample(lr)
    reference = np.clip(np.floor(imresize(lr / 255., SCALE) * 255 + 0.5), 0, 255)
    assert upsampled.shape == reference.shape == (lr.shape[0] * SCALE, lr.shape[1] * SCALE, 3)
    assert np.abs(upsampled.astype(int) - reference).max() <= 1


def test_duration_notice_gives_the_expected_duration_and_an_eta(monkeypatch):
    monkeypatch.setenv('OMP_WAIT_POLICY', 'PASSIVE')
    policy = ThreadPolicy(cpus=2, threads=2, user_threads=False, waits_passively=True)
    start = datetime.datetime(2026, 12, 6, 13, 0)
    notice = demo.duration_notice(400, policy, load=0.0, now=start)
    finish = start + datetime.timedelta(seconds=demo.expected_seconds(400))
    assert notice.startswith('The demo takes about 3 minutes on an idle 2-core CPU (400 training iterations); ')
    assert f'ETA {finish:%H:%M}' in notice and 'busy' not in notice
    assert 'Training and testing run with 2 threads each (2 CPUs allowed, OMP_WAIT_POLICY=PASSIVE)' in notice
    # four processes already running on two CPUs: the demo's two threads get a third of them
    busy = demo.duration_notice(400, policy, load=4.0, now=start)
    assert 'the CPUs are busy (load 4.0 on 2), so expect about 9 minutes' in busy
    assert f'ETA {start + datetime.timedelta(seconds=3 * demo.expected_seconds(400)):%H:%M}' in busy
    assert demo.duration_notice(40, policy, load=0.0, now=start).startswith('The demo takes about 1 minute on')


def test_makefile_and_help_state_the_demos_duration():
    assert load_options(str(REPO_ROOT / demo.TRAIN_OPTIONS))['train']['total_iter'] == demo.DEFAULT_ITERATIONS
    duration = f'{demo.minutes(demo.expected_seconds(demo.DEFAULT_ITERATIONS))} on an idle 2-core CPU'
    makefile_comment = ' '.join(line.lstrip('# ') for line in (REPO_ROOT / 'Makefile').read_text().splitlines()
                                if line.startswith('#'))
    assert f'`make demo`: set up .venv and run the demo end to end ({duration},' in makefile_comment
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    assert duration in ' '.join(parser.format_help().split())


@pytest.mark.slow
def test_shortened_demo_trains_tests_and_reports_psnr(demo_data, tmp_path):
    from basicsr.metrics import calculate_psnr

    shutil.copytree(demo_data, tmp_path / 'datasets' / 'demo')
    shutil.copytree(REPO_ROOT / 'options', tmp_path / 'options',
                    ignore=lambda folder, names: [name for name in names if not name.startswith('demo_')])
    result = subprocess.run([sys.executable, '-m', 'esc_arch.cli', 'demo', '--iterations', '1'], cwd=tmp_path,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-3000:])
    assert 'Reusing the demo dataset' in result.stdout
    assert re.search(r'^The demo takes about 1 minute on an idle 2-core CPU \(1 training iteration\).*ETA \d\d:\d\d',
                     result.stdout, re.MULTILINE)
    assert (tmp_path / 'experiments' / 'demo_ESC_light_x4' / 'models' / 'net_g_latest.pth').is_file()

    rows = {name: (float(bicubic), float(esc))
            for name, bicubic, esc in re.findall(r'^(\w+)\s+([\d.]+)\s+([\d.]+)\s*$', result.stdout, re.MULTILINE)}
    assert set(rows) == set(TEST_IMAGES)
    for name, (bicubic, esc) in rows.items():
        hr = read_image(str(demo_data / 'test' / 'HR' / f'{name}.png'), color=True)
        lr = read_image(str(demo_data / 'test' / 'LR_bicubic' / f'X{SCALE}' / f'{name}x{SCALE}.png'), color=True)
        assert bicubic == pytest.approx(calculate_psnr(bicubic_upsample(lr), hr, SCALE, test_y_channel=True), abs=0.01)
        assert 5 < esc < 60  # one iteration from random weights: far from useful, but a real PSNR
    # The demo's data are deterministic, and so is its bicubic baseline: the README quotes it.
    assert np.mean([bicubic for bicubic, _ in rows.values()]) == pytest.approx(29.38, abs=0.006)
    # the demo's ESC numbers are those that `basicsr test` logged
    log = next((tmp_path / 'results' / 'demo_ESC_light_x4').glob('test_demo_ESC_light_x4_*.log')).read_text()
    logged_psnr = float(re.search(r'# psnr: ([\d.]+)', log).group(1))
    assert np.mean([esc for _, esc in rows.values()]) == pytest.approx(logged_psnr, abs=0.01)  # printed rounded
    assert re.search(r'^mean\s+[\d.]+\s+[\d.]+\s+\([+-][\d.]+ dB\)$', result.stdout, re.MULTILINE)
    # comparison.png: one row per test image of LR, bicubic, ESC-light and HR panels
    from esc_arch.comparison import CAPTION_HEIGHT, GAP, LABEL_HEIGHT, PANEL_SIZE
    comparison = os.path.join('results', 'demo_ESC_light_x4', 'comparison.png')
    assert comparison in result.stdout
    count = len(TEST_IMAGES)
    assert read_image(str(tmp_path / comparison)).shape == (
        count * (LABEL_HEIGHT + PANEL_SIZE + CAPTION_HEIGHT) + (count - 1) * GAP, 4 * PANEL_SIZE + 3 * GAP, 3)


def test_demo_outside_the_repository_says_where_to_run_it(tmp_path, monkeypatch, capsys):
    from esc_arch.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(['demo']) == 2
    assert capsys.readouterr().err == ('basicsr demo: error: options file not found: '
                                       'options/demo_train_ESC_light_x4.yml (run the demo from the repository '
                                       'root, or pass --train-options)\n')
    assert os.listdir(tmp_path) == []
