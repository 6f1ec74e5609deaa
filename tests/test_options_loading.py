"""Reading options files (esc_arch.options.loading): safe YAML, ``--force_yml`` overrides without running
code, duplicate keys refused, and each run's options read once, BasicSR's patched ``parse_options`` included."""
import os
import sys

import pytest
from helpers import (
    assert_refused,
    make_pairs,
    srmodel_test_options,
    train_options,
    write_yaml,
)

from esc_arch.cli import main
from esc_arch.compat import basicsr_patches, patched
from esc_arch.errors import OptionsError
from esc_arch.options import loading
from esc_arch.options.loading import override_value

import basicsr.train

HOSTILE_VALUE = "[__import__('os').system('touch MARKER')]"


def test_options_file_with_a_python_tag_runs_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_yaml(tmp_path / 'train.yml', train_options(make_pairs(tmp_path / 'pairs'), 2, model_type='ESCModel'))
    with open(tmp_path / 'train.yml', 'a') as stream:
        stream.write('hostile: !!python/object/apply:os.system ["touch MARKER"]\n')
    before = sorted(os.listdir(tmp_path))

    assert main(['train', '-opt', 'train.yml']) == 2
    assert_refused(capsys, tmp_path, before, 'never Python objects')
    assert not (tmp_path / 'MARKER').exists()


def test_basicsr_parse_options_reads_files_and_overrides_without_running_code(tmp_path, monkeypatch):
    """BasicSR's own parser (inside train_pipeline) under the command's patches: no tag, eval or exec runs."""
    monkeypatch.chdir(tmp_path)
    options = train_options(make_pairs(tmp_path / 'pairs'), 2, model_type='ESCModel')
    write_yaml(tmp_path / 'train.yml', options)
    (tmp_path / 'hostile.yml').write_text('name: !!python/object/apply:os.system ["touch MARKER"]\n')
    key_injection = 'name"]+__import__("os").system("touch MARKER")#'  # BasicSR exec()s opt["KEY"]=value
    with patched(*basicsr_patches()):
        monkeypatch.setattr(sys, 'argv', ['basicsr train', '-opt', 'hostile.yml'])
        with pytest.raises(OptionsError, match='hostile.yml, line 1: .*python/object/apply:os.system'):
            basicsr.train.parse_options(str(tmp_path), is_train=True)
        monkeypatch.setattr(sys, 'argv', ['basicsr train', '-opt', 'train.yml', '--force_yml',
                                          f'datasets:train:name={HOSTILE_VALUE}', f'{key_injection}=1',
                                          'train:optim_g:lr=1e-4'])
        opt, args = basicsr.train.parse_options(str(tmp_path), is_train=True)
    assert not (tmp_path / 'MARKER').exists()
    assert opt['datasets']['train']['name'] == ["__import__('os').system('touch MARKER')"]  # literal, not evaluated
    assert opt[key_injection] == 1 and opt['train']['optim_g']['lr'] == 1e-4
    assert args.force_yml[0] == f'datasets:train:name={HOSTILE_VALUE}'


@pytest.mark.parametrize('spelling', [['--force', 'KEY=1'], ['--force_y', 'KEY=1'], ['--force_yml=KEY=1']])
def test_abbreviated_force_yml_runs_no_code_in_basicsr_parse_options(tmp_path, monkeypatch, spelling):
    """argparse takes abbreviations and ``--opt=value``: BasicSR would exec those overrides too."""
    monkeypatch.chdir(tmp_path)
    write_yaml(tmp_path / 'train.yml', train_options(make_pairs(tmp_path / 'pairs'), 2, model_type='ESCModel'))
    key_injection = 'name"]+__import__("os").system("touch MARKER")#'
    argv = ['basicsr train', '-opt', 'train.yml', *(word.replace('KEY', key_injection) for word in spelling)]
    with patched(*basicsr_patches()):
        monkeypatch.setattr(sys, 'argv', argv)
        opt, _ = basicsr.train.parse_options(str(tmp_path), is_train=True)
    assert not (tmp_path / 'MARKER').exists()
    assert opt[key_injection] == 1


def test_force_yml_code_is_a_literal_value_and_refused_as_a_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_yaml(tmp_path / 'train.yml', train_options(make_pairs(tmp_path / 'pairs'), 2, model_type='ESCModel'))
    before = sorted(os.listdir(tmp_path))
    assert main(['train', '-opt', 'train.yml', '--force_yml', f'name={HOSTILE_VALUE}']) == 2
    assert_refused(capsys, tmp_path, before, 'name must be a non-empty text')
    assert not (tmp_path / 'MARKER').exists()


def test_duplicate_option_is_refused_naming_key_and_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_yaml(tmp_path / 'train.yml', train_options(make_pairs(tmp_path / 'pairs'), 2, model_type='ESCModel'))
    text = (tmp_path / 'train.yml').read_text().replace('logger:\n', 'logger:\n  print_freq: 5\n', 1)
    (tmp_path / 'train.yml').write_text(text)
    line = text.splitlines().index('  print_freq: 1') + 1
    assert main(['train', '-opt', 'train.yml']) == 2
    assert_refused(capsys, tmp_path, ['pairs', 'train.yml'], f'train.yml, line {line}: option "print_freq" is given '
                   'twice')


@pytest.mark.parametrize('text, value', [('none', None), ('~', None), ('True', True), ('yes', 'yes'), ('5', 5),
                                         ('1e-4', 1e-4), ('!!float 2e-4', 2e-4), ('[1, 2]', [1, 2]),
                                         ('{}x4', '{}x4'), ('!!python/object/apply:os.system [x]',
                                                            '!!python/object/apply:os.system [x]')])
def test_override_values_are_yaml_as_basicsr_reads_them(text, value):
    assert override_value(text) == value


@pytest.fixture
def counted_reads(monkeypatch):
    reads = []
    read = loading.load_options

    def load_options(path):
        reads.append(path)
        return read(path)

    monkeypatch.setattr(loading, 'load_options', load_options)
    return reads


def test_basicsr_test_reads_its_options_file_once(tmp_path, monkeypatch, counted_reads, fresh_basicsr_logger):
    monkeypatch.chdir(tmp_path)
    data = make_pairs(tmp_path / 'set')
    options = write_yaml(tmp_path / 'test.yml', srmodel_test_options(data, 'from_file'))
    assert main(['test', '-opt', options, '--force_yml', 'name=from_override']) == 0
    assert counted_reads == [options]
    assert (tmp_path / 'results' / 'from_override').is_dir() and not (tmp_path / 'results' / 'from_file').exists()


def test_basicsr_parse_options_outside_the_command_reads_the_file_once(tmp_path, monkeypatch, counted_reads):
    """BasicSR's own train.py with ``apply_all()``: the patched parse_options reads the file itself, once."""
    import basicsr.train

    path = write_yaml(tmp_path / 'train.yml', train_options(make_pairs(tmp_path / 'set'), total_iter=2))
    monkeypatch.setattr('sys.argv', ['train.py', '-opt', path, '--force_yml', 'train:ema_decay=0.25'])
    opt, args = basicsr.train.parse_options(str(tmp_path), is_train=True)
    assert counted_reads == [path]
    assert opt['train']['ema_decay'] == 0.25 and args.force_yml == ['train:ema_decay=0.25']


def _alias_bomb(levels: int = 9) -> str:
    """A small document whose aliases expand to 9 ** levels values (an options printout would never end)."""
    lines = ['a0: &a0 [x, x, x, x, x, x, x, x, x]']
    lines += [f'a{i}: &a{i} [{", ".join([f"*a{i - 1}"] * 9)}]' for i in range(1, levels)]
    return '\n'.join(lines) + '\n'


def test_alias_bomb_is_refused_in_one_line(tmp_path):
    path = tmp_path / 'bomb.yml'
    path.write_text(_alias_bomb())
    assert path.stat().st_size < 1500
    with pytest.raises(OptionsError, match=r'bomb\.yml, line \d+: its aliases expand to more than 100,000 values'):
        loading.load_options(str(path))


def test_alias_that_contains_itself_is_refused(tmp_path):
    path = tmp_path / 'loop.yml'
    path.write_text('a: &a [1, *a]\n')
    with pytest.raises(OptionsError, match='an alias refers to a value that contains it'):
        loading.load_options(str(path))


def test_deep_nesting_is_one_line_not_a_recursion_error(tmp_path):
    path = tmp_path / 'deep.yml'
    path.write_text('x: ' + '[' * 100_000 + '\n')
    with pytest.raises(OptionsError, match=f'deep.yml, line 1: options nested more than {loading.MAX_DEPTH}'):
        loading.load_options(str(path))


def test_merge_keys_and_moderate_aliases_work(tmp_path):
    path = tmp_path / 'merge.yml'
    path.write_text('defaults: &d {lr: 0.001, betas: [0.9, 0.99]}\n'
                    'optim_g:\n  <<: *d\n  lr: 0.0002\n'
                    'optim_d: *d\n')
    assert loading.load_options(str(path)) == {
        'defaults': {'lr': 0.001, 'betas': [0.9, 0.99]},
        'optim_g': {'lr': 0.0002, 'betas': [0.9, 0.99]},
        'optim_d': {'lr': 0.001, 'betas': [0.9, 0.99]}}


@pytest.mark.parametrize('entry', ['=1', 'train:=1', ':name=x', 'train::lr=1'])
def test_force_yml_entry_with_an_empty_option_name_is_refused(entry):
    with pytest.raises(OptionsError, match='names an empty option'):
        loading.apply_overrides({'train': {}}, [entry], 'x.yml')


def test_basicsr_train_refuses_an_alias_bomb_before_creating_anything(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'bomb.yml').write_text('name: bomb\nmodel_type: ESCModel\n' + _alias_bomb())
    assert main(['train', '-opt', 'bomb.yml']) == 2
    assert 'its aliases expand to more than' in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ['bomb.yml']
