"""One run per experiment: a second run of a running experiment is refused before anything is archived;
the lock of a killed run is taken over."""
import logging
import os
import socket
import subprocess
import sys

import pytest
from helpers import (
    make_pairs,
    train_options,
    write_yaml,
)

from esc_arch.cli import main
from esc_arch.errors import TrainingError
from esc_arch.runs.experiment_lock import experiment_lock, lock_path


@pytest.fixture
def other_process():
    process = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
    yield process
    process.kill()
    process.wait()


def test_second_run_of_an_experiment_is_refused_before_archiving(tmp_path, monkeypatch, capsys, other_process):
    monkeypatch.chdir(tmp_path)
    write_yaml(tmp_path / 'train.yml', train_options(make_pairs(tmp_path / 'pairs'), 2, model_type='ESCModel'))
    running = tmp_path / 'experiments' / 'tiny_esc'
    running.mkdir(parents=True)
    (running / 'train.log').write_text('the first run')
    lock = lock_path(str(running))
    with open(lock, 'w') as stream:
        stream.write(f'{other_process.pid} {socket.gethostname()}\n')

    assert main(['train', '-opt', 'train.yml']) == 2
    error = capsys.readouterr().err
    assert error.count('\n') == 1 and f'is in use by another run (process {other_process.pid} on ' in error
    assert sorted(os.listdir(tmp_path / 'experiments')) == ['tiny_esc', 'tiny_esc.lock']  # nothing archived
    assert (running / 'train.log').read_text() == 'the first run'


def test_lock_of_a_killed_run_is_taken_over_and_released(tmp_path, caplog):
    finished = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True)
    dead_pid = int(finished.stdout)
    folder = str(tmp_path / 'experiments' / 'run')
    os.makedirs(os.path.dirname(folder))
    with open(lock_path(folder), 'w') as stream:
        stream.write(f'{dead_pid} {socket.gethostname()}\n')
    with caplog.at_level(logging.WARNING), experiment_lock(folder) as lock:
        assert open(lock).read().split() == [str(os.getpid()), socket.gethostname()]
        with pytest.raises(TrainingError, match='is in use by another run'):
            with experiment_lock(folder):
                pass
    assert f'its run (process {dead_pid} on {socket.gethostname()}) no longer exists' in caplog.text
    assert not os.path.exists(lock_path(folder))
