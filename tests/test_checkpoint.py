"""Safe checkpoint loading: key selection, refusal of pickled code, config detection, mismatch messages."""
import itertools
import logging
import re

import cv2
import pytest
import torch
from helpers import (  # noqa: E402
    SCALE,
    TINY,
    TINY_ESC,
    TINY_NETWORKS,
    RunsCode,
    assert_one_line_error,
    make_pairs,
    model_options,
    one_line_error,
    outcome,
    paired_dataset,
    run_basicsr,
    smooth_image,
    write_yaml,
)

from esc_arch.archs import ESC, ESCFP, ESCReal, build_preset
from esc_arch.checkpoint import (
    adapt_state_dict,
    infer_network_config,
    load_into_network,
    load_state_dict,
    matching_preset,
)
from esc_arch.errors import CheckpointError

from basicsr.models import build_model  # noqa: E402


def _tiny_state_dict(scale=2):
    return ESC(upscaling_factor=scale, **TINY).state_dict()


@pytest.mark.parametrize('layout', ['params_ema', 'params', 'bare', 'module'])
def test_state_dict_is_found_in_each_layout(tmp_path, layout):
    weights = _tiny_state_dict()
    other = {key: torch.zeros_like(value) for key, value in weights.items()}
    checkpoint = {
        'params_ema': {'params_ema': weights, 'params': other},
        'params': {'params': weights},
        'bare': weights,
        'module': {f'module.{key}': value for key, value in weights.items()},
    }[layout]
    torch.save(checkpoint, tmp_path / 'net.pth')
    loaded = load_state_dict(tmp_path / 'net.pth')
    assert loaded.keys() == weights.keys()
    assert all(torch.equal(loaded[key], weights[key]) for key in weights)


def test_param_key_is_preferred(tmp_path):
    weights = _tiny_state_dict()
    other = {key: value + 1 for key, value in weights.items()}
    torch.save({'params_ema': weights, 'params': other}, tmp_path / 'net.pth')
    loaded = load_state_dict(tmp_path / 'net.pth', param_key='params')
    assert torch.equal(loaded['proj.weight'], other['proj.weight'])


def test_checkpoint_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / 'code_ran'
    torch.save({'params': _tiny_state_dict(), 'payload': RunsCode(marker)}, tmp_path / 'evil.pth')
    with pytest.raises(CheckpointError, match=r'refused: loading it would run arbitrary code \(it contains io.open\)'):
        load_state_dict(tmp_path / 'evil.pth')
    assert not marker.exists()


@pytest.mark.parametrize('content, message', [
    (None, 'checkpoint not found'),
    (b'', 'not a readable PyTorch checkpoint'),
    (b'plain text, not a checkpoint', 'not a'),
    ('truncated', 'not a readable PyTorch checkpoint'),
])
def test_unreadable_checkpoints_name_the_file(tmp_path, content, message):
    path = tmp_path / 'broken.pth'
    if content == 'truncated':
        torch.save(_tiny_state_dict(), path)
        path.write_bytes(path.read_bytes()[:200])
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as info:
        load_state_dict(path)
    assert str(path) in str(info.value) and '\n' not in str(info.value)


def test_dict_without_tensors_is_not_a_state_dict(tmp_path):
    torch.save({'iter': 10, 'optimizers': []}, tmp_path / 'state.pth')
    with pytest.raises(CheckpointError, match='holds no state dict.*iter, optimizers'):
        load_state_dict(tmp_path / 'state.pth')


_GRID = [(ESC, scale, use_ln) for scale, use_ln in itertools.product((2, 3, 4), (False, True))]
_GRID += [(ESCFP, scale, None) for scale in (2, 3, 4)] + [(ESCReal, 4, None)]


@pytest.mark.parametrize('arch, scale, use_ln', _GRID)
@pytest.mark.parametrize('shape', [dict(TINY, exp_ratio=1.25), dict(TINY, dim=24, pdim=12, kernel_size=7,
                                                                       n_blocks=2, conv_blocks=3, window_size=6,
                                                                       num_heads=3, exp_ratio=2.0)])
def test_config_is_read_back_from_the_weights(arch, scale, use_ln, shape):
    config = dict(shape, upscaling_factor=scale)
    if use_ln is not None:
        config['use_ln'] = use_ln
    found = infer_network_config(arch(**config).state_dict())
    assert found == {'type': arch.__name__, **config}


def test_config_of_reference_weights(fixtures_dir):
    for path in fixtures_dir.glob('official_ESC*.pt'):
        reference = torch.load(path, weights_only=True)
        expected = {'type': reference['arch'], **reference['config']}
        if expected['type'] == 'ESC':
            expected.setdefault('use_ln', False)
        assert infer_network_config(reference['state_dict']) == expected, path.name


def test_presets_are_recognised():
    found = infer_network_config(build_preset('ESC-FP', scale=3).state_dict())
    assert matching_preset(found) == 'ESC-FP'
    assert matching_preset(infer_network_config(build_preset('ESC-light', scale=2).state_dict())) == 'ESC-light'
    assert matching_preset(infer_network_config(_tiny_state_dict())) is None


def test_foreign_weights_are_not_an_esc_network():
    with pytest.raises(CheckpointError, match='not those of an ESC'):
        infer_network_config(torch.nn.Conv2d(3, 3, 3).state_dict())


def test_mismatch_is_explained_in_one_line():
    network = ESC(upscaling_factor=4, **TINY)
    with pytest.raises(CheckpointError) as info:
        load_into_network(network, build_preset('ESC-FP', scale=3).state_dict(), source='fp.pth')
    message = str(info.value)
    assert '\n' not in message
    assert message.startswith('fp.pth does not fit the network: missing plk_filter')
    assert 'unexpected lk_channel' in message and '(+' in message
    assert 'type=ESCFP (network: ESC)' in message and 'it is ESC-FP x3' in message


@pytest.mark.parametrize('is_train', [False, True])
def test_checkpoint_that_runs_code_is_refused_by_the_model(tmp_path, is_train):
    marker = tmp_path / 'code_ran'
    torch.save({'params': ESC(**TINY).state_dict(), 'extra': RunsCode(marker)}, tmp_path / 'evil.pth')
    with pytest.raises(CheckpointError, match='refused: loading it would run arbitrary code'):
        build_model(model_options(tmp_path, is_train=is_train, pretrain=tmp_path / 'evil.pth'))
    assert not marker.exists()


@pytest.mark.parametrize('network, difference', [
    (ESCFP(**TINY), 'type=ESCFP (network: ESC)'),
    (ESC(**{**TINY, 'dim': 24}), 'dim=24 (network: 16)'),
])
def test_checkpoint_of_another_architecture_is_explained(tmp_path, network, difference):
    torch.save({'params': network.state_dict()}, tmp_path / 'other.pth')
    with pytest.raises(CheckpointError, match=re.escape(difference)) as error:
        build_model(model_options(tmp_path, is_train=False, pretrain=tmp_path / 'other.pth'))
    assert f'{tmp_path / "other.pth"} does not fit the network' in str(error.value)


@pytest.mark.slow
def test_refused_checkpoint_in_basicsr_test_is_one_line(tmp_path):
    marker = tmp_path / 'code_ran'
    torch.save({'params': ESC(**TINY).state_dict(), 'extra': RunsCode(marker)}, tmp_path / 'evil.pth')
    write_yaml(tmp_path / 'test.yml', dict(
        name='evil', model_type='ESCModel', scale=SCALE, num_gpu=0, network_g=dict(TINY_ESC), val={},
        datasets=dict(test_1=paired_dataset(make_pairs(tmp_path / 'pairs', count=1), {})),
        path=dict(pretrain_network_g=str(tmp_path / 'evil.pth'))))

    returncode, output = outcome(run_basicsr(tmp_path, 'test', '-opt', 'test.yml'))
    assert_one_line_error(returncode, output, 'test', f'{tmp_path / "evil.pth"} was refused: loading it would run '
                          'arbitrary code (it contains io.open)')
    assert not marker.exists()


def test_non_finite_weights_are_refused_at_load_naming_the_tensor(tiny_checkpoint, tmp_path, capsys):
    checkpoint, yaml_path, network = tiny_checkpoint
    state_dict = network.state_dict()
    state_dict['proj.weight'][0, 0, 0, 0] = float('nan')
    torch.save({'params_ema': state_dict}, tmp_path / 'diverged.pth')
    with pytest.raises(CheckpointError, match=r'diverged.pth holds non-finite weights: proj.weight has 1 NaN/inf'):
        load_state_dict(tmp_path / 'diverged.pth')
    cv2.imwrite(str(tmp_path / 'in.png'), smooth_image(10, 12))
    one_line_error(capsys, ['upscale', '-i', str(tmp_path / 'in.png'), '-o', str(tmp_path / 'out'), '--model',
                            str(yaml_path), '--weights', str(tmp_path / 'diverged.pth')],
                   'holds non-finite weights: proj.weight')


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


# Every network type at TINY size, used wherever the full size is not needed.
@pytest.mark.parametrize('kind', ['ESC', 'ESCFP'])
@pytest.mark.parametrize('source, target', [(2, 3), (2, 4), (4, 2)])
def test_other_scale_loads_strictly_once_adapted(kind, source, target):
    state = TINY_NETWORKS[kind](source).state_dict()
    network = TINY_NETWORKS[kind](target)
    with pytest.raises(RuntimeError, match='to_img'):  # nothing is resampled behind the caller's back
        network.load_state_dict(state, strict=True)
    adapted = adapt_state_dict(state, network)
    assert adapted is not state and state['to_img.weight'].shape[0] == 3 * source ** 2  # the input is left as it was
    network.load_state_dict(adapted, strict=True)
    assert network(torch.rand(1, 3, 6, 5)).shape == (1, 3, 6 * target, 5 * target)
    # Everything but the head is taken over unchanged.
    assert torch.equal(network.state_dict()['proj.weight'], state['proj.weight'])


@pytest.mark.parametrize('kind', list(TINY_NETWORKS))
def test_adapting_weights_of_the_same_scale_changes_nothing(kind):
    network = TINY_NETWORKS[kind]()
    state = network.state_dict()
    notes = []
    assert adapt_state_dict(state, network, notes.append) is state and not notes


def test_mismatched_state_dict_still_fails_strict_loading():
    state = TINY_NETWORKS['ESC']().state_dict()
    state.pop('last.bias')
    with pytest.raises(RuntimeError, match='last.bias'):
        TINY_NETWORKS['ESC']().load_state_dict(state, strict=True)


@pytest.mark.parametrize('strict', [True, False])
@pytest.mark.parametrize('scale', [3, 4])
def test_x2_ema_weights_start_an_x3_x4_model(tmp_path, fixtures_dir, basicsr_log, strict, scale):
    """The paper's fine-tuning start: pretrain_network_g + param_key_g params_ema, to_img resampled."""
    fixture = torch.load(fixtures_dir / 'official_scale_transfer_ESC_light_x2.pt')
    x2 = fixture['source_state_dict']
    noise = {name: value + 0.01 for name, value in x2.items()}  # 'params' differ from 'params_ema'
    torch.save({'params': noise, 'params_ema': x2}, tmp_path / 'x2.pth')
    config = {key: value for key, value in fixture['source_config'].items() if key != 'upscaling_factor'}
    opt = model_options(tmp_path, scale=scale, pretrain=tmp_path / 'x2.pth', strict=strict,
                  network=dict(type='ESC', upscaling_factor=scale, **config))
    model = build_model(opt)
    for net in (model.net_g, model.net_g_ema):
        for name in ('weight', 'bias'):
            torch.testing.assert_close(getattr(net.to_img, name).detach(), fixture['targets'][scale][f'to_img.{name}'])
        torch.testing.assert_close(net.proj.weight.detach(), x2['proj.weight'])
    messages = [record.getMessage() for record in basicsr_log]
    assert messages.count(f'to_img resampled from x2 to x{scale}.') == 2  # net_g and net_g_ema
    assert not [record for record in basicsr_log if record.levelno >= logging.WARNING]  # no key/shape mismatch


def test_same_scale_checkpoint_loads_without_warnings(tmp_path, basicsr_log):
    torch.save({'params_ema': ESC(upscaling_factor=SCALE, **TINY).state_dict()}, tmp_path / 'x4.pth')
    for strict in (True, False):
        build_model(model_options(tmp_path, pretrain=tmp_path / 'x4.pth', strict=strict, is_train=False))
    assert not [record.getMessage() for record in basicsr_log if record.levelno >= logging.WARNING]
    assert not [record for record in basicsr_log if 'resampled' in record.getMessage()]
