"""Safe checkpoint loading: key selection, refusal of pickled code, config detection, mismatch messages."""
import itertools

import pytest
import torch
from helpers import TINY, RunsCode

from esc_arch.archs import ESC, ESCFP, ESCReal, build_preset
from esc_arch.checkpoint import infer_network_config, load_into_network, load_state_dict, matching_preset
from esc_arch.errors import CheckpointError


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
