"""The patch mechanism (esc_arch.patching), the one table of patches (esc_arch.compat.table), and each fix:
the failure it addresses, and basicsr working with it.

conftest.py applies every patch (``esc_arch.compat.apply_all()``), as the ``basicsr`` command does.
"""
import json
import subprocess
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import lmdb_paired_dataset

from esc_arch import compat, patching
from esc_arch.compat import MISSING, Patch, apply, is_applied, lmdb_shared, original, patched, resume, undo
from esc_arch.compat.table import PATCHES, patches_named
from esc_arch.errors import CompatibilityError

RESUME_WITHOUT_CUDA, = patches_named('resume-without-cuda')
TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent

# ---------------------------------------------------------------- the patch mechanism


@pytest.fixture
def toy_module(monkeypatch):
    """A module ``toy_target`` with a function, a class with a method and a mapping, for patches to replace."""
    module = types.ModuleType('toy_target')
    module.function = lambda: 'original'
    module.Class = type('Class', (), {'method': lambda self: 'original'})
    module.mapping = {'kept': 1}
    monkeypatch.setitem(sys.modules, 'toy_target', module)
    return module


def toy_patch(target, value='patched', **options):
    return Patch(name=f'toy {target}', target=target, replacement=lambda original: value, reason='test',
                 checked=options.pop('checked', 'pytest>=1'), **options)


@pytest.mark.parametrize('target, read', [
    ('toy_target:function', lambda module: module.function),
    ('toy_target:Class.method', lambda module: module.Class.method),
    ('toy_target:mapping[kept]', lambda module: module.mapping['kept']),
])
def test_patch_applies_once_and_undo_restores_the_original(toy_module, target, read):
    before = read(toy_module)
    patch = toy_patch(target)
    assert apply(patch) and is_applied(patch)
    assert read(toy_module) == 'patched' and original(patch) is before
    toy_module_replaced_again = toy_patch(target, value='second')  # same name: the same patch declared twice
    assert not apply(patch) and not apply(toy_module_replaced_again)
    assert read(toy_module) == 'patched'
    assert undo(patch) and not is_applied(patch)
    assert read(toy_module) is before
    assert not undo(patch)
    with pytest.raises(LookupError):
        original(patch)


def test_undo_removes_what_the_patch_added(toy_module):
    attribute, item = toy_patch('toy_target:added'), toy_patch('toy_target:mapping[added]')
    for patch in (attribute, item):
        assert apply(patch) and original(patch) is MISSING
    assert toy_module.added == 'patched' and toy_module.mapping['added'] == 'patched'
    for patch in (attribute, item):
        undo(patch)
    assert not hasattr(toy_module, 'added') and toy_module.mapping == {'kept': 1}


def test_unneeded_patch_leaves_the_target_alone(toy_module):
    patch = toy_patch('toy_target:function', needed=lambda original: original() != 'original')
    assert not apply(patch) and not is_applied(patch)
    assert toy_module.function() == 'original'


def test_patched_undoes_only_what_it_applied(toy_module):
    outer, inner = toy_patch('toy_target:function'), toy_patch('toy_target:mapping[kept]')
    apply(outer)
    try:
        with patched(outer, inner):
            assert toy_module.function == 'patched' and toy_module.mapping['kept'] == 'patched'
        assert toy_module.function == 'patched' and toy_module.mapping == {'kept': 1}
    finally:
        undo(outer)


def test_patches_of_one_target_stack_and_undo_in_reverse_order(toy_module):
    first = Patch(name='first', target='toy_target:function', replacement=lambda original: lambda: f'1({original()})',
                  reason='test', checked='pytest>=1')
    second = Patch(name='second', target='toy_target:function', replacement=lambda original: lambda: f'2({original()})',
                   reason='test', checked='pytest>=1')
    with patched(first, second):
        assert toy_module.function() == '2(1(original))'
        with pytest.raises(RuntimeError, match='cannot undo patch first'):
            undo(first)
        assert toy_module.function() == '2(1(original))' and is_applied(first)
    assert toy_module.function() == 'original' and not is_applied(first) and not is_applied(second)


def test_malformed_target_is_refused():
    with pytest.raises(ValueError, match='not "module:attribute'):
        toy_patch('toy_target.function')
    with pytest.raises(ValueError, match='checked'):
        toy_patch('toy_target:function', checked='basicsr 1.4.2')  # a label, not a guard


@pytest.mark.parametrize('checked', ['pytest==0.1', 'pytest>=1000', 'no-such-library-esc==1.0'])
def test_guard_refuses_a_version_the_patch_was_not_checked_against(toy_module, checked):
    patch = toy_patch('toy_target:function', checked=checked)
    with pytest.raises(CompatibilityError, match=f'checked against {checked} only'):
        apply(patch)
    assert toy_module.function() == 'original' and not is_applied(patch)


def test_guard_of_a_skipping_patch_warns_and_leaves_the_target_alone(toy_module):
    patch = toy_patch('toy_target:function', checked='pytest>=1000', unchecked='skip')
    with pytest.warns(RuntimeWarning, match='left unpatched'):
        assert not apply(patch)
    assert toy_module.function() == 'original'


def test_guard_accepts_the_installed_version(toy_module):
    major = int(pytest.__version__.split('.')[0])
    for checked in (f'pytest=={pytest.__version__}', f'pytest=={major}', f'pytest>={major}'):
        patch = toy_patch('toy_target:function', checked=checked)
        with patched(patch):
            assert toy_module.function == 'patched'


def test_replacement_named_by_string_is_imported_only_when_applied(toy_module):
    toy_module.builder = lambda original: lambda: f'built({original()})'
    toy_module.needed = lambda original: original() == 'original'
    patch = Patch(name='by name', target='toy_target:function', replacement='toy_target:builder', reason='test',
                  checked='pytest>=1', needed='toy_target:needed')
    with patched(patch):
        assert toy_module.function() == 'built(original)'
    plain = Patch(name='plain', target='toy_target:function', replacement=patching.replaced_by('toy_target:Class'),
                  reason='test', checked='pytest>=1')
    with patched(plain):
        assert toy_module.function is toy_module.Class


# ---------------------------------------------------------------- the table


def test_table_rows_have_unique_names_known_scopes_and_one_row_per_target_and_scope():
    names = [patch.name for patch in PATCHES]
    assert len(set(names)) == len(names)
    scopes = {'import', 'apply_all', 'train', 'test', 'within safe-parse-options', 'within gloo-launcher'}
    assert {patch.when for patch in PATCHES} <= scopes
    rows = [(patch.target, patch.when) for patch in PATCHES]
    assert len(set(rows)) == len(rows)
    # Scopes that are in place together (import + apply_all + train/test) replace each target once.
    together = [patch.target for patch in PATCHES if patch.when in ('import', 'apply_all', 'train')]
    assert len(set(together)) == len(together)
    together = [patch.target for patch in PATCHES if patch.when in ('import', 'apply_all', 'test')]
    assert len(set(together)) == len(together)


def test_every_basicsr_row_is_guarded_by_the_basicsr_version_setup_py_requires():
    setup = (REPO_ROOT / 'setup.py').read_text()
    assert "'basicsr==1.4.2'" in setup and "'torch>=2.6'" in setup
    for patch in PATCHES:
        if patch.target.startswith(('basicsr', 'sys:', 'torch')):
            assert 'basicsr==1.4.2' in patch.checked, patch.name
    assert 'torch>=2.6' in patches_named('weights-only-torch-load')[0].checked


def test_a_basicsr_row_refuses_another_basicsr_version(monkeypatch):
    row = patches_named('untrained-weights-warning')[0]  # a row conftest.py does not apply
    monkeypatch.setattr(patching, 'installed_version', lambda library: '1.5.0' if library == 'basicsr' else '9')
    with pytest.raises(CompatibilityError, match=r'untrained-weights-warning .*basicsr==1.4.2 only.*basicsr 1.5.0'):
        apply(row)
    assert not is_applied(row)


def test_every_basicsr_patch_undoes_to_the_original_and_reapplies():
    patches = compat.basicsr_patches()
    assert len({patch.name for patch in patches}) == len(patches)
    replaced = {}
    for patch in patches:
        if is_applied(patch):  # applied by conftest.py
            owner, name, is_item = patching._locate(patch.target)
            replaced[patch.name] = (owner, name, is_item, original(patch))
    assert replaced, 'conftest.py applies the patches'
    try:
        for patch in patches:
            undo(patch)
        for owner, name, is_item, before in replaced.values():
            assert patching._current(owner, name, is_item) is before
    finally:
        assert sorted(compat.apply_all()) == sorted(replaced)
    for owner, name, is_item, before in replaced.values():
        assert patching._current(owner, name, is_item) is not before
    assert compat.apply_all() == []  # a second application changes nothing


@pytest.mark.slow
def test_import_applies_only_the_import_patches_and_apply_all_the_rest():
    """``import esc_arch`` leaves BasicSR's training functions alone; ``apply_all`` replaces them."""
    result = run_python(
        'import json, esc_arch, basicsr.train\n'
        'from basicsr.utils.registry import DATASET_REGISTRY\n'
        'from esc_arch import compat\n'
        'def state():\n'
        '    return [basicsr.train.load_resume_state.__module__, DATASET_REGISTRY.get("PairedImageDataset").__name__]\n'
        'before = state()\n'
        'applied = compat.apply_all()\n'
        'print(json.dumps([before, applied, state(), compat.apply_all()]))\n')
    assert result.returncode == 0, result.stderr[-2000:]
    before, applied, after, again = json.loads(result.stdout.strip().splitlines()[-1])
    assert before == ['basicsr.train', 'PairedImageDataset']
    assert after == ['esc_arch.compat.resume', 'CheckedPairedImageDataset']
    assert {'weights-only-torch-load', 'folder-real-esrgan-dataset'} <= set(applied)
    assert {'resume-without-cuda', 'checked-paired-image-dataset', 'safe-parse-options-train'} <= set(applied)
    assert again == []


# ---------------------------------------------------------------- torchvision


def run_python(code):
    return subprocess.run([sys.executable, '-c', code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_plain_torchvision_import_fails_only_with_the_missing_op_schema():
    """Without esc_arch, a CUDA torchvision next to a CPU torch fails to import: the case the fix handles."""
    result = run_python('import torchvision')
    if result.returncode == 0:
        pytest.skip('torchvision imports on its own here (its compiled ops load): there is no failure to check')
    assert 'torchvision::nms' in result.stderr, result.stderr[-2000:]


@pytest.mark.slow
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
    assert resume.needs_fix(original(RESUME_WITHOUT_CUDA))


@pytest.mark.skipif(torch.cuda.is_available(), reason='the original works where CUDA does')
def test_basicsr_original_cannot_resume_without_cuda(tmp_path):
    state = save_training_state(tmp_path, 4)
    with pytest.raises((AssertionError, RuntimeError)):
        original(RESUME_WITHOUT_CUDA)(training_options(tmp_path, False, str(state)))


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
    original_init = original(patches_named('lmdb-shared-environments')[0])
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


@pytest.mark.slow
def test_forked_dataloader_worker_reads_an_lmdb_its_parent_opened(paired_lmdbs):
    # In a fresh interpreter with a time limit: a fork from the long-lived test process could
    # inherit thread-pool state from earlier tests and hang the whole suite.
    code = f"""
import sys
sys.path.insert(0, {str(TESTS_DIR)!r})  # where pytest finds helpers
import esc_arch, torch
from pathlib import Path
esc_arch.compat.apply_all()
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
