"""Stop signals: SIGTERM/SIGINT stop training after saving the current iteration (a second signal at once),
and leave no partial files behind in the data preparation and upscale commands."""
import os
import signal
import subprocess
import time

import cv2
import pytest
import torch
from helpers import (  # noqa: E402
    WAIT_SECONDS,
    assert_nothing_written,
    console_script,
    image_folder,
    logged_epoch_iteration_lr,
    logged_iterations,
    make_pairs,
    smooth_image,
    start_basicsr,
    train_options,
    wait_for,
    write_yaml,
    writing_command_arguments,
)

from esc_arch.cli import main
from esc_arch.runs import stop_signals as stop_on_signal


@pytest.mark.slow
def test_sigterm_saves_the_current_iteration_and_stops(tmp_path):
    """Preemption: SIGTERM to the whole process group (DataLoader worker included) saves a state, exit 130."""
    options = train_options(make_pairs(tmp_path / 'pairs'), 1000, model_type='ESCModel', ema_decay=0.9)
    options['datasets']['train']['num_worker_per_gpu'] = 1
    options['logger']['save_checkpoint_freq'] = 1000
    write_yaml(tmp_path / 'train.yml', options)
    experiment = tmp_path / 'experiments' / options['name']
    process = start_basicsr(tmp_path, 'train', '-opt', 'train.yml')
    try:
        wait_for(lambda: 2 in logged_iterations((tmp_path / 'output.txt').read_text()), process, 'iteration 2')
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(WAIT_SECONDS)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    output = (tmp_path / 'output.txt').read_text()

    assert process.returncode == 130, output[-3000:]
    assert 'Traceback' not in output and 'exited unexpectedly' not in output, output[-3000:]
    assert output.strip().splitlines()[-1] == 'basicsr train: interrupted'
    epoch, stopped = (int(value) for value in logged_epoch_iteration_lr(output)[-1][:2])
    assert f'networks and training state of iteration {stopped} saved; continue with --auto_resume' in output
    state = torch.load(experiment / 'training_states' / f'{stopped}.state')
    assert state['iter'] == stopped and stopped >= 2
    assert state['epoch'] in (epoch, epoch + 1)  # the next epoch when the signal came at an epoch's end
    assert set(torch.load(experiment / 'models' / f'net_g_{stopped}.pth')) == {'params', 'params_ema'}


class _SigtermBlockedAtStart(torch.utils.data.Dataset):
    """Reports, in a worker without worker_init_fn, whether SIGTERM was blocked when the worker started."""

    def __len__(self):
        return 2

    def __getitem__(self, index):
        return signal.SIGTERM in signal.pthread_sigmask(signal.SIG_BLOCK, [])


@pytest.mark.skipif(not stop_on_signal.can_wait_for_signals(), reason='workers take SIGTERM in a thread on Linux')
def test_training_workers_start_with_sigterm_blocked():
    """So that a SIGTERM before the worker's worker_init_fn is left to it rather than ending the worker."""
    results = {}
    for guarded in (False, True):
        loader = torch.utils.data.DataLoader(_SigtermBlockedAtStart(), batch_size=None, num_workers=1)
        if guarded:
            stop_on_signal.start_workers_with_sigterm_blocked(loader)
        results[guarded] = list(loader)
    assert results == {False: [False, False], True: [True, True]}
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # the training process's mask is back


def test_stop_signal_handler_waits_for_the_training_loop_then_a_second_signal_stops_at_once():
    from esc_arch.compat import patched, patches_for

    import basicsr.data

    handlers = {signum: signal.getsignal(signum) for signum in stop_on_signal.STOP_SIGNALS}
    with patched(*patches_for('train')), stop_on_signal.save_on_stop_signals():  # as basicsr train
        assert basicsr.data.worker_init_fn is stop_on_signal.worker_init_ignoring_stop_signals
        with pytest.raises(KeyboardInterrupt):  # before training starts: stop at once
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        stop_on_signal._stop['training'] = True
        os.kill(os.getpid(), signal.SIGTERM)  # recorded for the model to act on
        assert stop_on_signal._stop['signal'] == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert {signum: signal.getsignal(signum) for signum in stop_on_signal.STOP_SIGNALS} == handlers
    assert basicsr.data.worker_init_fn is stop_on_signal.basicsr_worker_init_fn
    assert stop_on_signal._stop == {'signal': None, 'training': False, 'pid': None, 'sampler': None}


def _terminate_self(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.parametrize('command', ['make-lr', 'extract-subimages', 'make-lmdb', 'upscale'])
def test_sigterm_leaves_no_partial_files(tiny_checkpoint, tmp_path, monkeypatch, capsys, command):
    import esc_arch.cli.extract_subimages
    import esc_arch.cli.make_lr
    import esc_arch.data.lmdb_packing

    folder = image_folder(tmp_path / 'in', [(16, 16)] * 2)
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
