"""ESCModel: optimizer, mixed precision, clipping, compile, test-time tiling/ensemble, scale transfer, saving."""
import os
import subprocess

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
    train_step,
    weights,
    write_yaml,
)

from esc_arch import ESC
from esc_arch.inference.forward import average_over_views
from esc_arch.models import ESCModel, ESRModel

from basicsr.models import build_model  # noqa: E402  (after esc_arch, which makes basicsr importable)
from basicsr.utils.registry import MODEL_REGISTRY  # noqa: E402


def test_both_names_are_registered_and_adamw_is_used(tmp_path):
    assert MODEL_REGISTRY.get('ESCModel') is ESCModel
    assert issubclass(MODEL_REGISTRY.get('ESRModel'), ESCModel)
    model = build_model(dict(model_options(tmp_path), model_type='ESRModel'))
    assert isinstance(model, ESRModel)
    assert type(model.optimizer_g) is torch.optim.AdamW
    assert model.optimizer_g.param_groups[0]['betas'] == (0.9, 0.9)


def test_unknown_optimizer_and_precision_are_named(tmp_path):
    with pytest.raises(ValueError, match="'Adamw' is not a torch.optim optimizer"):
        build_model(model_options(tmp_path, optim_g=dict(type='Adamw', lr=1e-3)))
    with pytest.raises(ValueError, match="train:mixed_precision must be one of bf16, fp16 or null; got 'fp8'"):
        build_model(model_options(tmp_path, mixed_precision='fp8'))


def test_bf16_autocast_training_step_on_cpu(tmp_path):
    model = build_model(model_options(tmp_path, mixed_precision='bf16', clip_grad_norm=0.5))
    before, ema_before = weights(model.net_g), weights(model.net_g_ema)
    dtypes = []
    model.net_g.to_img.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    log = train_step(model)
    assert dtypes == [torch.bfloat16]  # the network ran under autocast
    assert torch.isfinite(torch.tensor(log['l_pix'])) and 0 < log['grad_norm'] < 1e3
    assert any(not torch.equal(before[name], value) for name, value in model.net_g.state_dict().items())
    assert any(not torch.equal(ema_before[name], value) for name, value in model.net_g_ema.state_dict().items())


def test_fp16_gradients_are_unscaled_before_clipping(tmp_path):
    data = batch()
    torch.manual_seed(0)
    reference = build_model(model_options(tmp_path, clip_grad_norm=1e9))
    torch.manual_seed(0)
    model = build_model(model_options(tmp_path, mixed_precision='fp16', clip_grad_norm=1e9))
    assert model.grad_scaler is not None and model.grad_scaler.get_scale() > 1000
    # the norm of the true (unscaled) gradient, not of the gradient times the loss scale
    assert train_step(model, data=data)['grad_norm'] == pytest.approx(
        train_step(reference, data=data)['grad_norm'], rel=0.05)
    model.save_training_state(epoch=0, current_iter=1)
    state = torch.load(tmp_path / 'training_states' / '1.state')
    assert state['grad_scaler']['scale'] == model.grad_scaler.get_scale()


def test_non_finite_gradient_norm_skips_the_step(tmp_path):
    model = build_model(model_options(tmp_path, clip_grad_norm=1.0, pixel_opt=dict(type='L1Loss', loss_weight=1e38)))
    before, ema_before = weights(model.net_g), weights(model.net_g_ema)
    log = train_step(model)
    assert torch.isfinite(torch.tensor(log['l_pix'])) and not torch.isfinite(torch.tensor(log['grad_norm']))
    assert model.nonfinite_in_a_row == 1
    assert all(torch.equal(before[name], value) for name, value in model.net_g.state_dict().items())
    assert all(torch.equal(ema_before[name], value) for name, value in model.net_g_ema.state_dict().items())
    assert not model.optimizer_g.state  # AdamW took no step


def test_compile_option_keeps_checkpoint_keys(tmp_path):
    model = build_model(model_options(tmp_path, compile=dict(backend='eager')))
    keys = set(ESC(upscaling_factor=SCALE, **TINY).state_dict())
    train_step(model)
    model.save(epoch=0, current_iter=1)
    saved = torch.load(tmp_path / 'models' / 'net_g_1.pth')
    assert set(saved) == {'params', 'params_ema'}
    assert set(saved['params']) == set(saved['params_ema']) == keys
    assert sorted(os.listdir(tmp_path / 'models')) == ['net_g_1.pth']  # no temporary file left


def test_any_test_size_tiling_and_self_ensemble(tmp_path):
    lq = torch.rand(1, 3, 19, 26)  # not a multiple of the window: the network pads, not the model
    plain = build_model(model_options(tmp_path, is_train=False, val=dict(pad_to_window=False)))
    plain.feed_data({'lq': lq})
    plain.test()
    assert plain.output.shape == (1, 3, 19 * SCALE, 26 * SCALE)
    with torch.no_grad():
        torch.testing.assert_close(plain.output, plain.net_g(lq))

    tiled = build_model(model_options(tmp_path, is_train=False, val=dict(tile_size=8, tile_pad=8, pad_to_window=False)))
    tiled.net_g.load_state_dict(plain.net_g.state_dict())
    tiled.feed_data({'lq': lq})
    tiled.test()
    assert tiled.output.shape == plain.output.shape
    assert (tiled.output - plain.output).abs().mean() < 0.02

    ensemble = build_model(model_options(tmp_path, is_train=False, val=dict(self_ensemble=True, pad_to_window=False)))
    ensemble.net_g.load_state_dict(plain.net_g.state_dict())
    ensemble.feed_data({'lq': lq})
    ensemble.test()

    def mirrored(x, mirror):
        return x.flip(-1) if mirror else x

    with torch.no_grad():  # the 8 symmetries of the square as 4 rotations, with and without a mirror, each undone
        expected = sum(
            mirrored(plain.net_g(mirrored(lq, mirror).rot90(k, (-2, -1))).rot90(-k, (-2, -1)), mirror)
            for mirror in (False, True) for k in range(4)) / 8
    torch.testing.assert_close(ensemble.output, expected)
    assert not torch.allclose(ensemble.output, plain.output)


def test_self_ensemble_undoes_every_transform():
    def upsample(x):  # commutes with flips and transposes
        return torch.nn.functional.interpolate(x, scale_factor=2, mode='nearest')

    images = torch.rand(2, 3, 5, 7)
    torch.testing.assert_close(average_over_views(lambda view, transposed: upsample(view), images), upsample(images))


def test_training_mode_is_restored_after_test_without_ema(tmp_path):
    model = build_model(model_options(tmp_path, ema_decay=0))
    model.feed_data(batch())
    model.test()
    assert model.net_g.training






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
