"""The experiment ``name`` is one folder name, checked before anything is created (issue 21, item 1)."""
import os

import pytest
from helpers import make_pairs, run_basicsr, train_options, write_yaml  # noqa: E402

from esc_arch.cli import main
from esc_arch.errors import OptionsError
from esc_arch.options import check_options, resumes_training

BAD_NAMES = [
    ('../../somewhere', 'is a path'), ('../x', 'is a path'), ('a/b', 'is a path'), ('/tmp/abs', 'is a path'),
    ('a\\b', 'is a path'), ('C:run', 'is a path'), ('.', 'is a reference to a folder'),
    ('..', 'is a reference to a folder'), ('a\nb', 'contains a control character'),
    ('a\x00b', 'contains a control character'), ('tab\there', 'contains a control character'),
    ('x' * 201, 'is longer than 200 bytes'), ('é' * 101, 'is longer than 200 bytes'),
]


@pytest.fixture(scope='module')
def pairs(tmp_path_factory):
    return make_pairs(tmp_path_factory.mktemp('names') / 'pairs')


@pytest.mark.parametrize('is_train', [True, False])
@pytest.mark.parametrize('name, problem', BAD_NAMES, ids=[repr(name)[:20] for name, _ in BAD_NAMES])
def test_name_that_is_not_one_folder_name_is_refused(pairs, name, problem, is_train):
    options = train_options(pairs, total_iter=2)
    if not is_train:
        options['datasets'] = {'test_1': dict(options['datasets']['train'])}
    options['name'] = name
    with pytest.raises(OptionsError, match=f'^name .* {problem}.*: it must be one folder name') as error:
        check_options(options, is_train=is_train)
    assert '\n' not in str(error.value)


@pytest.mark.parametrize('name', ['', '   ', None, ['x'], 5])
def test_empty_or_non_text_name_is_refused(pairs, name):
    options = train_options(pairs, total_iter=2)
    options['name'] = name
    with pytest.raises(OptionsError, match='^name must be a non-empty text'):
        check_options(options)


@pytest.mark.parametrize('name', ['ESC_x4_DIV2K', 'débug-1.2', 'a b', '...', 'x' * 200])
def test_ordinary_names_are_accepted(pairs, name):
    options = train_options(pairs, total_iter=2)
    options['name'] = name
    check_options(options)


def test_resume_lookup_refuses_the_name_before_looking_outside_experiments(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OptionsError, match="^name '../outside' is a path"):
        resumes_training({'name': '../outside', 'path': {}}, auto_resume=True)


@pytest.mark.parametrize('phase', ['val', 'test_1'])
def test_dataset_name_becomes_no_path(pairs, phase):
    """BasicSR saves validation and test images under visualization/<dataset name>/."""
    options = train_options(pairs, total_iter=2)
    options['datasets'][phase] = dict(options['datasets']['train'], name='../../escaped')
    with pytest.raises(OptionsError, match=f"^datasets:{phase}:name '../../escaped' is a path"):
        check_options(options, is_train=phase == 'val')


def _outside_and_experiments(root):
    """An existing folder outside experiments/ and an existing experiments/ folder, with what they hold."""
    (root / 'work' / 'experiments' / 'earlier').mkdir(parents=True)
    (root / 'work' / 'experiments' / 'earlier' / 'keep.txt').write_text('earlier run')
    (root / 'outside').mkdir()
    (root / 'outside' / 'precious.txt').write_text('mine')
    return sorted(str(path.relative_to(root)) for path in root.rglob('*') if 'pairs' not in path.parts)


@pytest.mark.parametrize('command', ['train', 'test'])
@pytest.mark.parametrize('name', ['../../outside', '../outside', 'nested/run', '..'])
def test_force_yml_name_path_creates_and_renames_nothing(tmp_path, monkeypatch, capsys, name, command):
    before = _outside_and_experiments(tmp_path)
    work = tmp_path / 'work'
    monkeypatch.chdir(work)
    options = train_options(make_pairs(tmp_path / 'pairs'), total_iter=1)
    if command == 'test':
        options.update(datasets={'test_1': dict(options['datasets']['train'])}, val={'save_img': True})
    write_yaml(work / 'options.yml', options)
    listing = sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob('*') if 'pairs' not in path.parts)

    assert main([command, '-opt', 'options.yml', '--force_yml', f'name={name}']) == 2
    error = capsys.readouterr().err
    assert error.startswith(f'basicsr {command}: error: name {name!r} ') and error.count('\n') == 1, error
    assert sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob('*')
                  if 'pairs' not in path.parts) == listing
    assert set(before) <= set(listing) and (tmp_path / 'outside' / 'precious.txt').read_text() == 'mine'


@pytest.mark.slow
def test_basicsr_train_with_a_name_outside_experiments_touches_nothing(tmp_path):
    """End to end, as the issue found it: ``basicsr train --force_yml name=../x`` with ``x`` existing next to the
    working folder would have archived ``x`` and written the run into its place."""
    work = tmp_path / 'work'
    work.mkdir()
    (tmp_path / 'x').mkdir()
    (tmp_path / 'x' / 'precious.txt').write_text('mine')
    write_yaml(work / 'train.yml', train_options(make_pairs(tmp_path / 'pairs'), total_iter=1))
    before = sorted(os.listdir(tmp_path)), sorted(os.listdir(work))

    result = run_basicsr(work, 'train', '-opt', 'train.yml', '--force_yml', 'name=../x')

    assert result.returncode == 2, result.stdout[-2000:]
    assert result.stdout.strip().splitlines()[-1].startswith("basicsr train: error: name '../x' is a path")
    assert 'Traceback' not in result.stdout
    assert (sorted(os.listdir(tmp_path)), sorted(os.listdir(work))) == before
    assert os.listdir(tmp_path / 'x') == ['precious.txt'] and (tmp_path / 'x' / 'precious.txt').read_text() == 'mine'
