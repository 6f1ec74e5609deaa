"""Each fix in esc_arch.compat: the failure it addresses, and basicsr working with it."""
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import esc_arch  # noqa: F401  (applies the fixes)
from esc_arch.compat import lmdb_shared, resume

from helpers import lmdb_paired_dataset

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent

# ---------------------------------------------------------------- torchvision


def run_python(code):
    return subprocess.run([sys.executable, '-c', code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)


def test_plain_torchvision_import_fails_only_with_the_missing_op_schema():
    """Without esc_arch, a CUDA torchvision next to a CPU torch fails to import: the case the fix handles."""
    result = run_python('import torchvision')
    if result.returncode == 0:
        pytest.skip('torchvision imports on its own here (its compiled ops load): there is no failure to check')
    assert 'torchvision::nms' in result.stderr, result.stderr[-2000:]


def test_basicsr_imports_after_esc_arch_in_a_fresh_process():
    result = run_python('import esc_arch, torchvision; import basicsr.data.degradations; '
                        'from torchvision.transforms.functional_tensor import rgb_to_grayscale; print("ok")')
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == 'ok'


def test_functional_tensor_alias_computes_grayscale():
    """basicsr's ``rgb_to_grayscale`` weighs red, green and blue 0.2989, 0.587 and 0.114, as torchvision's does."""
    from torchvision.transforms.functional_tensor import rgb_to_grayscale

    pure_colours = torch.eye(3).view(3, 3, 1, 1)  # a red, a green and a blue 1x1 image
    gray = rgb_to_grayscale(pure_colours)
    assert gray.shape == (3, 1, 1, 1)
    torch.testing.assert_close(gray.flatten(), torch.tensor([0.2989, 0.587, 0.114]))


# ---------------------------------------------------------------- resume


def save_training_state(folder, iteration):
    """A training state as BasicSR's ``save_training_state`` writes it (optimizer with tensors, scheduler)."""
    network = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    network(torch.rand(4, 3)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[5], gamma=0.5)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f'{iteration}.state'
    torch.save({'epoch': 1, 'iter': iteration, 'optimizers': [optimizer.state_dict()],
                'schedulers': [scheduler.state_dict()]}, path)
    return path


def training_options(tmp_path, auto_resume, resume_state=None):
    experiment = tmp_path / 'experiments' / 'demo'
    return {'name': 'demo', 'auto_resume': auto_resume, 'num_gpu': 0, 'network_g': {'type': 'ESC'},
            'path': {'resume_state': resume_state, 'pretrain_network_g': None,
                     'training_states': str(experiment / 'training_states'), 'models': str(experiment / 'models')}}


def test_resume_fix_is_installed_in_basicsr_train():
    import basicsr.train

    assert basicsr.train.load_resume_state is resume.load_resume_state
    assert resume.needs_fix(resume.load_resume_state.replaced)


@pytest.mark.skipif(torch.cuda.is_available(), reason='the original works where CUDA does')
def test_basicsr_original_cannot_resume_without_cuda(tmp_path):
    state = save_training_state(tmp_path, 4)
    with pytest.raises((AssertionError, RuntimeError)):
        resume.load_resume_state.replaced(training_options(tmp_path, False, str(state)))


def test_resume_state_loads_on_cpu_and_points_at_its_network(tmp_path):
    state_path = save_training_state(tmp_path / 'states', 4)
    options = training_options(tmp_path, False, str(state_path))
    state = resume.load_resume_state(options)
    assert state['iter'] == 4
    moments = state['optimizers'][0]['state'][0]['exp_avg']
    assert moments.device.type == 'cpu'
    assert options['path']['pretrain_network_g'].endswith('net_g_4.pth')


def test_auto_resume_finds_the_latest_state_of_the_experiment(tmp_path, monkeypatch):
    options = training_options(tmp_path, True)
    states = tmp_path / 'experiments' / 'demo' / 'training_states'
    for iteration in (2, 10, 9):  # numeric, not alphabetical, order
        save_training_state(states, iteration)
    (states / 'notes.state').write_text('not a state')
    monkeypatch.chdir(tmp_path / 'experiments')  # found from the options, not from the working directory
    state = resume.load_resume_state(options)
    assert state['iter'] == 10
    assert options['path']['resume_state'] == str(states / '10.state')


def test_auto_resume_without_states_starts_afresh(tmp_path):
    options = training_options(tmp_path, True)
    assert resume.load_resume_state(options) is None
    assert options['path']['resume_state'] is None


# ---------------------------------------------------------------- lmdb


@pytest.fixture
def paired_lmdbs(tmp_path):
    """``gt.lmdb`` (16x16) and ``lq.lmdb`` (4x4) with the same keys, made with basicsr's lmdb_util."""
    from basicsr.utils.lmdb_util import make_lmdb_from_imgs

    rng = np.random.default_rng(0)
    for kind, size in (('gt', 16), ('lq', 4)):
        folder = tmp_path / kind
        folder.mkdir()
        names = []
        for index in range(3):
            cv2.imwrite(str(folder / f'im{index}.png'), rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
            names.append(f'im{index}.png')
        make_lmdb_from_imgs(str(folder), str(tmp_path / f'{kind}.lmdb'), names, [name[:-4] for name in names],
                            map_size=1 << 24)  # basicsr's estimate is too small for tiny images
    return tmp_path


def test_basicsr_backend_cannot_open_one_lmdb_twice_without_the_fix(paired_lmdbs):
    import lmdb
    from basicsr.utils.file_client import LmdbBackend

    if not lmdb_shared.needs_fix():
        pytest.skip(f'lmdb {lmdb.__version__} allows a second open')
    original_init = lmdb_shared._backend_init.replaced
    first, second = LmdbBackend.__new__(LmdbBackend), LmdbBackend.__new__(LmdbBackend)
    original_init(first, str(paired_lmdbs / 'gt.lmdb'))
    try:
        with pytest.raises(lmdb.Error, match='already open'):
            original_init(second, str(paired_lmdbs / 'gt.lmdb'))
    finally:
        first._client['default'].close()


def test_train_and_val_datasets_read_one_lmdb(paired_lmdbs):
    train = lmdb_paired_dataset(paired_lmdbs, 'train', gt_size=8, use_hflip=True, use_rot=True)
    val = lmdb_paired_dataset(paired_lmdbs, 'val')
    sample = train[0]
    assert sample['gt'].shape == (3, 8, 8) and sample['lq'].shape == (3, 2, 2)
    for index in range(3):
        expected = cv2.imread(str(paired_lmdbs / 'gt' / f'im{index}.png')).astype(np.float32) / 255
        gt = val[index]['gt'].numpy().transpose(1, 2, 0)[:, :, ::-1]  # RGB CHW -> BGR HWC
        np.testing.assert_allclose(gt, expected, atol=1e-6)


def test_forked_dataloader_worker_reads_an_lmdb_its_parent_opened(paired_lmdbs):
    # In a fresh interpreter with a time limit: a fork from the long-lived test process could
    # inherit thread-pool state from earlier tests and hang the whole suite.
    code = f"""
import sys
sys.path.insert(0, {str(TESTS_DIR)!r})  # where pytest finds helpers
import esc_arch, torch
from pathlib import Path
from helpers import lmdb_paired_dataset
root = Path({str(paired_lmdbs)!r})
lmdb_paired_dataset(root, 'val')[0]  # the parent process now has both LMDBs open
train = lmdb_paired_dataset(root, 'train', gt_size=8, use_hflip=False, use_rot=False)
loader = torch.utils.data.DataLoader(train, batch_size=3, num_workers=1, multiprocessing_context='fork')
print(tuple(next(iter(loader))['gt'].shape))
"""
    result = subprocess.run([sys.executable, '-c', code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == '(3, 3, 8, 8)'
