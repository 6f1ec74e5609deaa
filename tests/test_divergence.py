"""Non-finite losses: a step with a NaN/inf loss is skipped, too many in a row stop training in one line,
naming the last training state saved before the divergence."""
import pytest
import torch
from helpers import (  # noqa: E402
    assert_one_line_error,
    batch,
    make_pairs,
    model_options,
    outcome,
    run_basicsr,
    saved_state,
    train_options,
    train_step,
    weights,
    write_yaml,
)

from esc_arch.errors import NonFiniteLossError

from basicsr.models import build_model  # noqa: E402


def test_non_finite_loss_skips_the_step_and_stops_after_n_in_a_row(tmp_path):
    model = build_model(model_options(tmp_path, max_consecutive_nonfinite=3))
    good = batch()
    bad = {'lq': good['lq'] * float('nan'), 'gt': good['gt']}
    before, ema_before = weights(model.net_g), weights(model.net_g_ema)

    train_step(model, 1, bad)
    train_step(model, 2, bad)
    assert model.nonfinite_in_a_row == 2
    assert all(torch.equal(before[name], value) for name, value in weights(model.net_g).items())
    assert all(torch.equal(ema_before[name], value) for name, value in weights(model.net_g_ema).items())
    assert not model.optimizer_g.state  # no optimizer step either

    train_step(model, 3, good)  # a finite step trains and resets the count
    assert model.nonfinite_in_a_row == 0 and model.optimizer_g.state
    train_step(model, 4, bad)
    train_step(model, 5, bad)
    with pytest.raises(NonFiniteLossError, match=r'^3 training steps in a row had a non-finite loss \(last at '
                       r'iteration 6\); stopping\. Lower the learning rate'):
        train_step(model, 6, bad)


@pytest.mark.slow
def test_diverged_training_stops_with_one_line(tmp_path):
    options = train_options(make_pairs(tmp_path / 'pairs'), 20, model_type='ESCModel', ema_decay=0.9,
                            max_consecutive_nonfinite=3)
    options['train']['pixel_opt']['loss_weight'] = 1e39  # a valid number whose float32 product is inf
    write_yaml(tmp_path / 'train.yml', options)

    returncode, output = outcome(run_basicsr(tmp_path, 'train', '-opt', 'train.yml'))
    assert_one_line_error(returncode, output, 'train', '3 training steps in a row had a non-finite loss (last at '
                          'iteration 3); stopping.')


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
