"""The authors' ESRModel keys behave as theirs: train:gradient_clip (halved after 50000 iterations) and use_amp."""

import pytest
import torch
from helpers import batch, model_options, train_step  # noqa: E402

from esc_arch.errors import OptionsError
from esc_arch.models.authors_options import HALVE_CLIP_AFTER_ITER, AuthorsKeys
from esc_arch.options.values import check_model_options

from basicsr.models import build_model  # noqa: E402  (after esc_arch, which makes basicsr importable)


def gradient_norm(model):
    grads = [p.grad for p in model.net_g.parameters() if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))


def test_gradient_clip_bounds_the_norm_and_halves_after_50000_iterations(tmp_path):
    bound = 1e-3  # far below the tiny network's gradient norm: every step is clipped
    model = build_model(model_options(tmp_path, gradient_clip=bound))
    data = batch()
    early = train_step(model, current_iter=HALVE_CLIP_AFTER_ITER, data=data)
    assert early['grad_norm'] > bound and gradient_norm(model) == pytest.approx(bound, rel=1e-4)
    late = train_step(model, current_iter=HALVE_CLIP_AFTER_ITER + 1, data=data)
    assert late['grad_norm'] > bound / 2 and gradient_norm(model) == pytest.approx(bound / 2, rel=1e-4)
    assert 'clip_grad_norm' not in model.opt['train']  # the options are not rewritten
    assert AuthorsKeys.read({'train': {'gradient_clip': 0}}, 'ESCModel', True).clip_bound(1) is None


def test_keys_in_the_wrong_section_are_named_in_one_line(tmp_path):
    top_clip = dict(model_options(tmp_path), gradient_clip=1.0)
    with pytest.raises(OptionsError, match=r"^gradient_clip \(at the top level\) is in the wrong place: the authors' "
                                           r"ESRModel reads it from train:; move it there$"):
        check_model_options(top_clip)
    with pytest.raises(OptionsError, match='gradient_clip .at the top level. is in the wrong place'):
        build_model(top_clip)  # the model checks too, before building anything
    train_amp = model_options(tmp_path, use_amp=True)
    with pytest.raises(OptionsError, match=r"^train:use_amp is in the wrong place: the authors' ESRModel reads it "
                                           r'from the top level; move it there$'):
        check_model_options(train_amp, is_train=False)  # also when testing
    with pytest.raises(OptionsError, match=r'^clip_grad_norm \(at the top level\) is in the wrong place: the ESC '
                                           r'models read it from train:'):
        check_model_options(dict(model_options(tmp_path), clip_grad_norm=1.0))


def test_authors_keys_and_the_projects_keys_for_the_same_thing_conflict(tmp_path):
    with pytest.raises(OptionsError, match=r'train:gradient_clip .* and train:clip_grad_norm are both set'):
        build_model(model_options(tmp_path, gradient_clip=1.0, clip_grad_norm=2.0))
    with pytest.raises(OptionsError, match=r'use_amp .* and train:mixed_precision are both set'):
        build_model(dict(model_options(tmp_path, mixed_precision='bf16'), use_amp=True))
    with pytest.raises(OptionsError, match=r"^use_amp must be true or false; got 'yes'"):
        build_model(dict(model_options(tmp_path), use_amp='yes'))
    with pytest.raises(OptionsError, match=r'^train:gradient_clip must be at least 0; got -1'):
        build_model(model_options(tmp_path, gradient_clip=-1))


def test_use_amp_on_cpu_is_fp16_with_a_gradient_scaler_and_no_clipping(tmp_path, monkeypatch, basicsr_log):
    model = build_model(dict(model_options(tmp_path, gradient_clip=1e-3), use_amp=True))
    assert model.amp_dtype == torch.float16 and isinstance(model.grad_scaler, torch.amp.GradScaler)
    assert model.grad_scaler.get_scale() > 1000
    assert any("Mixed precision training: fp16 on cpu (the authors' use_amp: forward and losses under autocast, no "
               "gradient clipping) with torch's cpu gradient scaler" in record.getMessage() for record in basicsr_log)
    assert any('train:gradient_clip 0.001: not applied under use_amp' in record.getMessage() for record in basicsr_log)
    dtypes = []
    model.net_g.to_img.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    clipped = []
    monkeypatch.setattr(torch.nn.utils, 'clip_grad_norm_', lambda *args, **kwargs: clipped.append(args))
    before = {name: value.clone() for name, value in model.net_g.state_dict().items()}
    log = train_step(model)
    assert dtypes == [torch.float16] and 'grad_norm' not in log and not clipped
    assert torch.isfinite(torch.tensor(log['l_pix']))
    assert any(not torch.equal(before[name], value) for name, value in model.net_g.state_dict().items())
    model.save_training_state(epoch=0, current_iter=1)
    assert 'grad_scaler' in torch.load(tmp_path / 'training_states' / '1.state')


def test_the_real_world_models_ignore_the_authors_keys_as_theirs_do():
    opt = {'use_amp': True, 'train': {'gradient_clip': 1.0}}
    keys = AuthorsKeys.read(opt, 'ESCRealNetModel', applies=False)
    assert not keys.use_amp and keys.clip_bound(1) is None
    assert keys.notes == ["use_amp and train:gradient_clip: ignored by ESCRealNetModel, as the authors' real-world "
                          'models ignore them (use train:mixed_precision / train:clip_grad_norm)']
    from esc_arch.models import ESCRealGANModel, ESCRealNetModel
    assert not ESCRealNetModel.reads_authors_keys and not ESCRealGANModel.reads_authors_keys
