"""Resuming training: a killed run resumes with its iteration, learning rate and EMA; auto-resume skips a
truncated state and refuses one that would run code; an interrupted save leaves the previous state usable."""
import os
import re
import signal
from pathlib import Path

import pytest
import torch
from helpers import (  # noqa: E402
    TINY_ESC,
    RunsCode,
    logged_iterations,
    make_pairs,
    model_options,
    outcome,
    run_basicsr,
    saved_state,
    start_basicsr,
    train_options,
    train_step,
    wait_for,
    write_yaml,
)

from esc_arch.compat.resume import latest_training_state, load_resume_state
from esc_arch.errors import CheckpointError
from esc_arch.models.esc_model import save_atomically

from basicsr.models import build_model  # noqa: E402


@pytest.mark.slow
def test_killed_training_resumes_with_iteration_lr_and_ema(tmp_path):
    """SIGKILL after a checkpoint; --auto_resume continues the iteration count, the LR schedule and the EMA."""
    options = train_options(make_pairs(tmp_path / 'pairs'), 1000, model_type='ESCModel', ema_decay=0.9,
                                scheduler=dict(type='MultiStepLR', milestones=[3], gamma=0.5))
    write_yaml(tmp_path / 'train.yml', options)
    experiment = tmp_path / 'experiments' / options['name']
    process = start_basicsr(tmp_path, 'train', '-opt', 'train.yml')
    try:
        wait_for(lambda: (experiment / 'training_states' / '4.state').is_file(), process, 'the state of iteration 4')
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    saved = int(Path(latest_training_state(str(experiment / 'training_states'))).stem)

    returncode, output = outcome(run_basicsr(tmp_path, 'train', '-opt', 'train.yml', '--auto_resume', '--force_yml',
                                             f'train:total_iter={saved + 1}'))
    assert returncode == 0, output[-3000:]
    assert re.search(rf'Resuming training from epoch: \d+, iter: {saved}\.', output)
    assert logged_iterations(output) == {saved + 1: 5e-4}  # after the milestone at 3, as scheduled
    checkpoint = torch.load(experiment / 'models' / f'net_g_{saved}.pth')
    latest = torch.load(experiment / 'models' / 'net_g_latest.pth')
    for name, ema in latest['params_ema'].items():  # one EMA update (decay 0.9) from the saved EMA
        torch.testing.assert_close(ema, 0.9 * checkpoint['params_ema'][name] + 0.1 * latest['params'][name])


def test_interrupted_save_leaves_the_previous_state_usable(tmp_path, monkeypatch):
    states = tmp_path / 'training_states'
    states.mkdir()
    save_atomically({'iter': 2}, states / '2.state')

    def interrupted_save(obj, stream):
        stream.write(b'half a state')
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(torch, 'save', interrupted_save)
        with pytest.raises(KeyboardInterrupt):
            save_atomically({'iter': 4}, states / '2.state')
        with pytest.raises(KeyboardInterrupt):
            save_atomically({'iter': 4}, states / '4.state')
    assert sorted(os.listdir(states)) == ['2.state']
    assert torch.load(states / '2.state') == {'iter': 2}
    # A SIGKILL leaves the temporary file behind; resuming ignores it.
    (states / '.4.state.12345.tmp').write_bytes(b'half a state')
    assert latest_training_state(str(states)) == str(states / '2.state')


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
    assert any('train:optim_g:lr is 0.0001 in the options and 0.001 in the resumed state: using 0.0001'
               in record.getMessage() for record in basicsr_log)


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

    opt, states = resume_options(tmp_path)
    torch.save(dict(iter=2, epoch=0, optimizers=[], schedulers=[]), states / '2.state')
    torch.save(dict(iter=4, epoch=0, optimizers=[], schedulers=[], payload=RunsCode(tmp_path / 'MARKER')),
               states / '4.state')
    with pytest.raises(CheckpointError, match='4.state was refused: loading it would run code'):
        load_resume_state(opt)
    assert not (tmp_path / 'MARKER').exists()
