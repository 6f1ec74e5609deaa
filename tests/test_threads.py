"""The thread policy (esc_arch.threads): the settings it makes, not timings (benchmarks/demo_under_load.py)."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from esc_arch.threads import (
    allowed_cpus,
    build_dataloader_with_one_thread_workers,
    one_thread_workers,
    thread_environment,
)

# Applies the policy in a fresh process (it changes process-wide settings) allowed the first N CPUs (argv[1]).
POLICY_SCRIPT = '''
import json, os, sys
cpus = int(sys.argv[1])
os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:cpus])
from esc_arch.threads import apply_thread_policy
torch_loaded = 'torch' in sys.modules
policy = apply_thread_policy()
import cv2, torch
print(json.dumps({'policy': policy.__dict__, 'torch_threads': torch.get_num_threads(),
                  'cv2_threads': cv2.getNumThreads(), 'torch_loaded': torch_loaded, 'describe': policy.describe(),
                  'environment': {name: os.environ.get(name) for name in ('OMP_NUM_THREADS', 'OMP_WAIT_POLICY')}}))
'''


def apply_in_subprocess(cpus, **environment):
    env = {name: value for name, value in os.environ.items() if name not in ('OMP_NUM_THREADS', 'OMP_WAIT_POLICY')}
    result = subprocess.run([sys.executable, '-c', POLICY_SCRIPT, str(cpus)], capture_output=True, text=True,
                            env={**env, **environment}, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize('cpus', [1, allowed_cpus()], ids=['one CPU allowed', 'all CPUs allowed'])
def test_main_process_threads_follow_the_allowed_cpus(cpus):
    report = apply_in_subprocess(cpus)
    assert report['policy']['cpus'] == cpus
    assert report['torch_threads'] == report['cv2_threads'] == report['policy']['threads'] == cpus
    # what child processes (the demo's train and test) inherit
    assert report['environment'] == {'OMP_NUM_THREADS': str(cpus), 'OMP_WAIT_POLICY': 'PASSIVE'}
    assert report['policy']['user_threads'] is False
    # OpenMP reads its wait policy when torch loads: passive in this process only if the policy came first
    assert report['policy']['waits_passively'] is not report['torch_loaded']
    assert report['describe'].startswith(f'{cpus} thread')


@pytest.mark.slow
def test_the_users_thread_settings_win():
    report = apply_in_subprocess(allowed_cpus(), OMP_NUM_THREADS='1', OMP_WAIT_POLICY='ACTIVE')
    assert report['torch_threads'] == report['cv2_threads'] == 1
    assert report['environment'] == {'OMP_NUM_THREADS': '1', 'OMP_WAIT_POLICY': 'ACTIVE'}
    assert report['policy']['user_threads'] is True and report['policy']['waits_passively'] is False
    assert 'from OMP_NUM_THREADS' in report['describe']


@pytest.mark.parametrize('environment, added', [
    ({}, {'OMP_NUM_THREADS': str(allowed_cpus()), 'OMP_WAIT_POLICY': 'PASSIVE'}),
    ({'OMP_NUM_THREADS': '3'}, {'OMP_WAIT_POLICY': 'PASSIVE'}),
    ({'OMP_NUM_THREADS': '3,1'}, {'OMP_WAIT_POLICY': 'PASSIVE'}),  # one count per nesting level
    ({'OMP_NUM_THREADS': 'many'}, {'OMP_NUM_THREADS': str(allowed_cpus()), 'OMP_WAIT_POLICY': 'PASSIVE'}),
    ({'OMP_NUM_THREADS': '0'}, {'OMP_NUM_THREADS': str(allowed_cpus()), 'OMP_WAIT_POLICY': 'PASSIVE'}),
    ({'OMP_WAIT_POLICY': 'active'}, {'OMP_NUM_THREADS': str(allowed_cpus())}),
])
def test_thread_environment_adds_only_what_is_unset_or_invalid(environment, added):
    assert thread_environment(dict(environment)) == added


def test_allowed_cpus_is_the_affinity():
    assert allowed_cpus() == len(os.sched_getaffinity(0))


class ThreadsInWorker(Dataset):
    """Each item: the worker's torch and OpenCV thread counts and its first NumPy random draw."""

    def __len__(self):
        return 4

    def __getitem__(self, index):
        return torch.tensor([torch.get_num_threads(), cv2.getNumThreads(), get_worker_info().id,
                             np.random.randint(1 << 30)])


def mark_seeded(worker_id):
    np.random.seed(1000 + worker_id)


@pytest.fixture
def opencv_threads_in_parent():
    """OpenCV at 2 threads in this process, which forked workers inherit unless their init changes it."""
    before = cv2.getNumThreads()
    cv2.setNumThreads(2)
    yield
    cv2.setNumThreads(before)


def worker_reports(loader):
    """Per worker: its thread counts and its first random draw."""
    reports = {}
    for batch in loader:
        for torch_threads, cv2_threads, worker, draw in batch.tolist():
            reports.setdefault(worker, (torch_threads, cv2_threads, draw))
    return reports


def test_data_loader_workers_get_one_thread_and_keep_their_own_init(opencv_threads_in_parent):
    if torch.multiprocessing.get_start_method() != 'fork':
        pytest.skip('the inherited OpenCV setting this checks is that of forked workers')
    without_policy = worker_reports(DataLoader(ThreadsInWorker(), batch_size=1, num_workers=2))
    assert {cv2_threads for _, cv2_threads, _ in without_policy.values()} == {2}  # what the policy changes

    loader = DataLoader(ThreadsInWorker(), batch_size=1, num_workers=2, worker_init_fn=one_thread_workers(mark_seeded))
    reports = worker_reports(loader)
    assert sorted(reports) == [0, 1]
    for worker, (torch_threads, cv2_threads, draw) in reports.items():
        assert torch_threads == cv2_threads == 1
        np.random.seed(1000 + worker)  # the loader's own worker_init_fn ran too
        assert draw == np.random.randint(1 << 30)


def test_basicsr_data_loaders_get_one_thread_workers(opencv_threads_in_parent):
    from basicsr.data import build_dataloader

    build = build_dataloader_with_one_thread_workers(build_dataloader)
    options = {'phase': 'train', 'num_worker_per_gpu': 2, 'batch_size_per_gpu': 1}
    reports = worker_reports(build(ThreadsInWorker(), options, num_gpu=0, seed=7))
    assert sorted(reports) == [0, 1]
    for worker, (torch_threads, cv2_threads, draw) in reports.items():
        assert torch_threads == cv2_threads == 1
        np.random.seed(7 + worker)  # BasicSR's worker_init_fn: seed + worker id (rank 0)
        assert draw == np.random.randint(1 << 30)
    # validation and test loaders have no workers: left as BasicSR builds them
    assert build(ThreadsInWorker(), {'phase': 'val'}).worker_init_fn is None


def test_wrapping_twice_runs_the_policy_once():
    once = one_thread_workers(mark_seeded)
    assert one_thread_workers(once) is once


def test_patch_of_basicsr_train_composes_with_the_stop_signal_workers(opencv_threads_in_parent):
    """The training command's table rows: one-thread workers and workers that ignore stop signals, together."""
    from esc_arch.compat import patched
    from esc_arch.compat.table import patches_named

    import basicsr.train

    options = {'phase': 'train', 'num_worker_per_gpu': 2, 'batch_size_per_gpu': 1}
    with patched(*patches_named('workers-ignore-stop-signals', 'one-thread-data-workers')):
        reports = worker_reports(basicsr.train.build_dataloader(ThreadsInWorker(), options, num_gpu=0, seed=3))
    for worker, (torch_threads, cv2_threads, draw) in reports.items():
        assert torch_threads == cv2_threads == 1
        np.random.seed(3 + worker)
        assert draw == np.random.randint(1 << 30)
