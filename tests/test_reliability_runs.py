"""Reliability of options and training runs: options never run code, no fake success, recovery after a
divergence, one run per experiment, and one-line errors for wrong option values, launchers and full disks.

Most cases run the ``basicsr`` dispatcher in-process (refused before BasicSR starts) or a model directly.
"""
import errno
import logging
import os
import socket
import subprocess
import sys
from argparse import Namespace

import pytest
import torch
from helpers import (
    SCALE,
    TINY,
    TINY_ESC,
    batch,
    console_script,
    make_pairs,
    model_options,
    train_options,
    train_step,  # noqa: E402
    write_yaml,
)

from esc_arch.cli import basicsr_pipeline, main
from esc_arch.compat import basicsr_patches, patched
from esc_arch.compat.resume import load_resume_state
from esc_arch.errors import CheckpointError, NonFiniteLossError, OptionsError, OutputError, TrainingError
from esc_arch.models.esc_model import save_atomically
from esc_arch.options.loading import override_value
from esc_arch.runs.experiment_lock import experiment_lock, lock_path

import basicsr.train
from basicsr.models import build_model  # noqa: E402  (after esc_arch, which makes basicsr importable)

HOSTILE_VALUE = "[__import__('os').system('touch MARKER')]"


def esc_options(root, total_iter=2, **train):
    options = train_options(make_pairs(root / 'pairs'), total_iter)
    options['model_type'] = 'ESCModel'
    options['train'].update(train)
    return options


def assert_refused(capsys, root, before, message, command='train'):
    """One line on stderr naming ``message``, and nothing created or archived under ``root``."""
    error = capsys.readouterr().err
    assert error.startswith(f'basicsr {command}: error: ') and error.count('\n') == 1, error
    assert message in error, error
    assert sorted(os.listdir(root)) == before


# ---------------------------------------------------------------- options never run code


def test_options_file_with_a_python_tag_runs_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_yaml(tmp_path / 'train.yml', esc_options(tmp_path))
    with open(tmp_path / 'train.yml', 'a') as stream:
        stream.write('hostile: !!python/object/apply:os.system ["touch MARKER"]\n')
    before = sorted(os.listdir(tmp_path))

    assert main(['train', '-opt', 'train.yml']) == 2
    assert_refused(capsys, tmp_path, before, 'never Python objects')
    assert not (tmp_path / 'MARKER').exists()


def test_basicsr_parse_options_reads_files_and_overrides_without_running_code(tmp_path, monkeypatch):
    """BasicSR's own parser (inside train_pipeline) under the command's patches: no tag, eval or exec runs."""
    monkeypatch.chdir(tmp_path)
    options = esc_options(tmp_path)
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
    write_yaml(tmp_path / 'train.yml', esc_options(tmp_path))
    key_injection = 'name"]+__import__("os").system("touch MARKER")#'
    argv = ['basicsr train', '-opt', 'train.yml', *(word.replace('KEY', key_injection) for word in spelling)]
    with patched(*basicsr_patches()):
        monkeypatch.setattr(sys, 'argv', argv)
        opt, _ = basicsr.train.parse_options(str(tmp_path), is_train=True)
    assert not (tmp_path / 'MARKER').exists()
    assert opt[key_injection] == 1


def test_force_yml_code_is_a_literal_value_and_refused_as_a_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_yaml(tmp_path / 'train.yml', esc_options(tmp_path))
    before = sorted(os.listdir(tmp_path))
    assert main(['train', '-opt', 'train.yml', '--force_yml', f'name={HOSTILE_VALUE}']) == 2
    assert_refused(capsys, tmp_path, before, 'name must be a non-empty text')
    assert not (tmp_path / 'MARKER').exists()


def test_duplicate_option_is_refused_naming_key_and_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_yaml(tmp_path / 'train.yml', esc_options(tmp_path))
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


# ---------------------------------------------------------------- no fake success


@pytest.mark.parametrize('change, message', [
    (dict(batch_size_per_gpu=4, dataset_enlarge_ratio=1), '3 training image(s) x dataset_enlarge_ratio 1 give 3 per '
     'epoch, fewer than batch_size_per_gpu 4: BasicSR drops incomplete batches, so no iteration would run'),
    (dict(total_iter=0), 'train:total_iter must be at least 1; got 0'),
], ids=['batch-larger-than-dataset', 'zero-iterations'])
def test_training_that_would_run_no_iteration_is_refused(tmp_path, monkeypatch, capsys, change, message):
    monkeypatch.chdir(tmp_path)
    options = esc_options(tmp_path)
    options['train']['total_iter'] = change.pop('total_iter', 2)
    options['datasets']['train'].update(change)
    write_yaml(tmp_path / 'train.yml', options)
    before = sorted(os.listdir(tmp_path))
    assert main(['train', '-opt', 'train.yml']) == 2
    assert_refused(capsys, tmp_path, before, message)


@pytest.mark.slow
def test_testing_random_weights_warns_on_stderr_and_in_the_log(tmp_path):
    root = make_pairs(tmp_path / 'pairs', count=1)
    dataset = dict(name='pairs', type='PairedImageDataset', dataroot_gt=str(root / 'HR'), dataroot_lq=str(root / 'LR'),
                   filename_tmpl='{}x4', io_backend=dict(type='disk'))
    write_yaml(tmp_path / 'test.yml', dict(name='untrained', model_type='ESCModel', scale=SCALE, num_gpu=0,
                                           network_g=dict(TINY_ESC), datasets=dict(test_1=dataset),
                                           path=dict(pretrain_network_g=None), val=dict(save_img=False)))
    result = subprocess.run([console_script(), 'test', '-opt', 'test.yml'], cwd=tmp_path, capture_output=True,
                            text=True, env={**os.environ, 'OMP_NUM_THREADS': '1'}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    warning = 'path:pretrain_network_g is not set: testing a network with random weights'
    assert any('WARNING' in line and warning in line for line in result.stderr.splitlines()), result.stderr[-3000:]
    log, = (tmp_path / 'results' / 'untrained').glob('test_untrained_*.log')
    assert warning in log.read_text()


# ---------------------------------------------------------------- recovery after a divergence


def saved_state(model, iteration):
    model.save_training_state(epoch=0, current_iter=iteration)
    return os.path.join(model.opt['path']['training_states'], f'{iteration}.state')


class Recorded(logging.Handler):
    """Collects the messages of BasicSR's logger (which does not propagate to pytest's caplog)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def basicsr_log():
    handler, logger = Recorded(), logging.getLogger('basicsr')
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.messages
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_resume_takes_the_learning_rate_of_the_options(tmp_path, basicsr_log):
    model = build_model(model_options(tmp_path, scheduler=dict(type='MultiStepLR', milestones=[2], gamma=0.5)))
    for iteration in (1, 2, 3):
        model.update_learning_rate(iteration)
        train_step(model, iteration)
    state = torch.load(saved_state(model, 3), weights_only=True)
    assert model.optimizer_g.param_groups[0]['lr'] == pytest.approx(5e-4)  # after the milestone

    options = model_options(tmp_path, scheduler=dict(type='MultiStepLR', milestones=[2], gamma=0.5))
    options['train']['optim_g']['lr'] = 1e-4  # lowered after a divergence
    resumed = build_model(options)
    resumed.resume_training(state)
    group = resumed.optimizer_g.param_groups[0]
    assert group['initial_lr'] == pytest.approx(1e-4) and group['lr'] == pytest.approx(5e-5)  # milestone kept
    assert resumed.schedulers[0].base_lrs == pytest.approx([1e-4])
    resumed.update_learning_rate(4)
    assert resumed.get_current_learning_rate() == pytest.approx([5e-5])
    assert any('train:optim_g:lr is 0.0001 in the options and 0.001 in the resumed state: using 0.0001' in message
               for message in basicsr_log)


def test_divergence_stop_names_the_state_saved_before_it(tmp_path):
    model = build_model(model_options(tmp_path, max_consecutive_nonfinite=2))
    good = batch()
    bad = {'lq': good['lq'] * float('nan'), 'gt': good['gt']}
    train_step(model, 1, good)
    train_step(model, 2, good)
    before = saved_state(model, 2)
    train_step(model, 3, bad)
    during = saved_state(model, 3)  # a checkpoint saved while the steps were skipped
    with pytest.raises(NonFiniteLossError) as stop:
        train_step(model, 4, bad)
    message = str(stop.value)
    assert f'resume from {before} (iteration 2, before the first non-finite step at iteration 3) with ' \
           f'--force_yml path:resume_state={before} (not --auto_resume: it would take {during}' in message
    assert '\n' not in message


def resume_options(tmp_path):
    states = tmp_path / 'training_states'
    states.mkdir()
    return dict(auto_resume=True, num_gpu=0, network_g=dict(TINY_ESC),
                path=dict(training_states=str(states), models=str(tmp_path / 'models'), resume_state=None)), states


def test_auto_resume_skips_a_truncated_latest_state(tmp_path, capsys):
    opt, states = resume_options(tmp_path)
    torch.save(dict(iter=2, epoch=0, optimizers=[], schedulers=[]), states / '2.state')
    torch.save(dict(iter=4, epoch=0, optimizers=[], schedulers=[]), states / '4.state')
    content = (states / '4.state').read_bytes()
    (states / '4.state').write_bytes(content[:len(content) // 2])  # killed while copying, disk full, ...

    resume_state = load_resume_state(opt)
    assert resume_state['iter'] == 2 and opt['path']['resume_state'] == str(states / '2.state')
    assert resume_state['skipped_states'] == [str(states / '4.state')]
    assert f'Skipping the unreadable training state {states / "4.state"}' in capsys.readouterr().err

    (states / '2.state').write_bytes(b'not a checkpoint')
    with pytest.raises(CheckpointError, match='--auto_resume: none of the 2 training state'):
        load_resume_state(opt)


def test_auto_resume_refuses_a_latest_state_that_would_run_code_instead_of_skipping_it(tmp_path):
    """Not a damaged file: resuming silently from an older state would redo (and overwrite) iterations."""
    from helpers import RunsCode

    opt, states = resume_options(tmp_path)
    torch.save(dict(iter=2, epoch=0, optimizers=[], schedulers=[]), states / '2.state')
    torch.save(dict(iter=4, epoch=0, optimizers=[], schedulers=[], payload=RunsCode(tmp_path / 'MARKER')),
               states / '4.state')
    with pytest.raises(CheckpointError, match='4.state was refused: loading it would run code'):
        load_resume_state(opt)
    assert not (tmp_path / 'MARKER').exists()


# ---------------------------------------------------------------- one run per experiment


@pytest.fixture
def other_process():
    process = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
    yield process
    process.kill()
    process.wait()


def test_second_run_of_an_experiment_is_refused_before_archiving(tmp_path, monkeypatch, capsys, other_process):
    monkeypatch.chdir(tmp_path)
    write_yaml(tmp_path / 'train.yml', esc_options(tmp_path))
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


# ---------------------------------------------------------------- one line instead of a traceback


def _set(section, **values):

    def modify(options):
        target = options
        for key in section.split(':') if section else ():
            target = target[key]
        target.update(values)

    return modify


def _rename(section, old, new):
    return lambda options: options[section].update({new: options[section].pop(old)})


@pytest.mark.parametrize('modify, message', [
    (_set('train', total_iter='abc'), "train:total_iter must be a number; got 'abc'"),
    (_set('datasets:train', batch_size_per_gpu=0), 'datasets:train:batch_size_per_gpu must be at least 1; got 0'),
    (_set('datasets:train', gt_size=-16), 'datasets:train:gt_size must be at least 1; got -16'),
    (_set('train:optim_g', lr='1e-4'), "train:optim_g:lr must be a number; got '1e-4' (write 1e-4 as 1.0e-4"),
    (_set('logger', save_checkpoint_freq=0), 'logger:save_checkpoint_freq must be at least 1; got 0'),
    (lambda options: options.update(val=dict(val_freg=2, metrics={})),
     'val:val_freg is not an option BasicSR or ESC reads; did you mean "val_freq"?'),
    (_rename('logger', 'print_freq', 'print_frequency'), 'logger:print_frequency is not an option'),
    (_set('train:pixel_opt', type='L1Los'), 'train:pixel_opt:type: no loss named "L1Los" is registered; did you '
     'mean "L1Loss"?'),
    (_set('train:optim_g', type='Adamm'), 'train:optim_g:type: ESCModel cannot build an optimizer "Adamm"; did you '
     'mean "Adam"?'),
    (lambda options: options.update(model_type='SRModel') or options['train']['optim_g'].update(type='AdamW'),
     'SRModel cannot build an optimizer "AdamW"; did you mean "Adam"? it takes Adam'),
    (_set('train', mixed_precision='fp8'), "train:mixed_precision must be one of bf16, fp16 or null; got 'fp8'"),
    (_set('train:scheduler', type='CosineAnnealing'), 'BasicSR has no scheduler "CosineAnnealing"; did you mean '
     '"CosineAnnealingRestartLR"?'),
    pytest.param(_set('', num_gpu=2), 'num_gpu is 2 but CUDA is not available on this machine',
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason='needs a machine without CUDA')),
    (_set('network_g', dim=100000, pdim=8), 'network_g (ESC): its 330,052,656,986 weights need 1320.2 GB, more than '
     'the'),
    (_set('train:scheduler', milestones=200000), 'train:scheduler:milestones must be a list of iteration numbers, '
     'e.g. [200000, 400000]; got 200000'),
], ids=['total-iter-text', 'batch-0', 'negative-gt-size', 'lr-text', 'checkpoint-freq-0', 'val-freq-typo',
        'logger-typo', 'loss', 'optimizer', 'basicsr-optimizer', 'precision', 'scheduler', 'num-gpu', 'huge-network',
        'milestones-scalar'])
def test_wrong_option_values_are_one_line_before_anything_is_written(tmp_path, monkeypatch, capsys, modify, message):
    monkeypatch.chdir(tmp_path)
    options = esc_options(tmp_path)
    modify(options)
    write_yaml(tmp_path / 'train.yml', options)
    before = sorted(os.listdir(tmp_path))
    assert main(['train', '-opt', 'train.yml']) == 2
    assert_refused(capsys, tmp_path, before, message)


@pytest.mark.parametrize('launcher, message', [
    ('pytorch', '--launcher pytorch needs the environment variable(s) RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT'),
    ('slurm', '--launcher slurm needs the environment variable(s) SLURM_PROCID, SLURM_NTASKS, SLURM_NODELIST'),
])
def test_launcher_without_its_environment_is_one_line(tmp_path, monkeypatch, capsys, launcher, message):
    monkeypatch.chdir(tmp_path)
    for name in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT', 'SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST'):
        monkeypatch.delenv(name, raising=False)
    write_yaml(tmp_path / 'train.yml', esc_options(tmp_path))
    before = sorted(os.listdir(tmp_path))
    assert main(['train', '-opt', 'train.yml', '--launcher', launcher]) == 2
    assert_refused(capsys, tmp_path, before, message)


def test_non_strict_load_ignores_mismatched_shapes_as_basicsr_does(tmp_path):
    """``strict_load_g: false`` is SRModel's: tensors of another shape are skipped (BasicSR logs each one), the
    others are loaded."""
    from esc_arch import ESC

    other = ESC(**dict(TINY, dim=24), upscaling_factor=SCALE).state_dict()
    other['plk_filter'] = torch.full_like(other['plk_filter'], 0.5)  # the one tensor whose shape fits
    torch.save({'params_ema': other}, tmp_path / 'w.pth')
    model = build_model(model_options(tmp_path, pretrain=tmp_path / 'w.pth', strict=False, is_train=False))
    loaded = model.get_bare_model(model.net_g).state_dict()
    assert torch.equal(loaded['plk_filter'], other['plk_filter'])
    assert loaded['proj.weight'].shape != other['proj.weight'].shape


def test_full_disk_while_saving_is_one_line(tmp_path, monkeypatch):
    def full_disk(obj, stream):
        raise OSError(errno.ENOSPC, 'No space left on device')

    target = tmp_path / 'net_g_latest.pth'
    target.write_bytes(b'previous')
    monkeypatch.setattr(torch, 'save', full_disk)
    with pytest.raises(OutputError, match=f'cannot write {target}: No space left on device'):
        save_atomically({}, str(target))
    assert target.read_bytes() == b'previous' and os.listdir(tmp_path) == ['net_g_latest.pth']


@pytest.mark.parametrize('error', [OSError(errno.ENOSPC, 'No space left on device'),
                                   OSError(errno.EROFS, 'Read-only file system')])
def test_disk_errors_inside_the_pipeline_are_one_line(tmp_path, monkeypatch, error):
    monkeypatch.chdir(tmp_path)
    write_yaml(tmp_path / 'train.yml', esc_options(tmp_path))
    args = Namespace(opt='train.yml', launcher='none', auto_resume=False, debug=False, local_rank=0, force_yml=None)

    def pipeline(root):
        raise error

    with pytest.raises(OutputError, match=f'^{error.strerror} while writing under '):
        basicsr_pipeline.run(pipeline, args, 'train')
    assert not (tmp_path / 'experiments').exists()  # the lock was released and its folder removed


def test_training_set_without_a_full_batch_is_refused_when_the_loaders_are_built():
    """For dataset types the options check cannot count (built by BasicSR, then found empty)."""
    from torch.utils.data import DataLoader

    empty = DataLoader(list(range(3)), batch_size=4, drop_last=True)
    create_loaders = basicsr_pipeline.checked_train_dataloaders(lambda opt, logger: (empty, None, [], 1, 2))
    with pytest.raises(TrainingError, match='datasets:train gives no full batch of batch_size_per_gpu 4 per epoch'):
        create_loaders({'datasets': {'train': {'batch_size_per_gpu': 4}}}, None)
