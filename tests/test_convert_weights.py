"""``basicsr convert-weights`` and reading the authors' arbitrary-scale checkpoints and .safetensors files."""
import sys

import pytest
import torch

from esc_arch.archs.esc_lte import ESCLTE
from esc_arch.checkpoint import load_state_dict, read_checkpoint
from esc_arch.cli import main
from esc_arch.errors import CheckpointError

from helpers import RunsCode, perturbed

TINY_LTE = dict(dim=16, pdim=8, kernel_size=5, n_blocks=1, conv_blocks=1, window_size=8, num_heads=2, hidden_dim=16,
                mlp_hidden=[16])


def same(first, second):
    return first.keys() == second.keys() and all(torch.equal(first[key], second[key]) for key in first)


@pytest.fixture
def network():
    torch.manual_seed(0)
    return perturbed(ESCLTE(**TINY_LTE))


@pytest.fixture
def authors_checkpoint(tmp_path, network):
    """A checkpoint as the authors' arbitrary-scale trainer saves it."""
    optimizer = torch.optim.Adam(network.parameters())
    path = tmp_path / 'epoch-last.pth'
    torch.save({'model': {'name': 'lte', 'args': {'encoder_spec': {'name': 'esc', 'args': {'no_upsampling': True}},
                                                  'imnet_spec': {'name': 'mlp', 'args': {'out_dim': 3,
                                                                                         'hidden_list': [16]}},
                                                  'hidden_dim': 16},
                          'sd': network.state_dict()},
                'optimizer': {'name': 'adam', 'args': {'lr': 2e-4}, 'sd': optimizer.state_dict()},
                'epoch': 1000}, path)
    return path


def test_the_authors_checkpoint_is_read_safely_wherever_weights_are_read(authors_checkpoint, network):
    state_dict = load_state_dict(authors_checkpoint)  # what options, upscale and test use (weights_only)
    assert same(state_dict, network.state_dict())
    ESCLTE(**TINY_LTE).load_state_dict(state_dict, strict=True)


def test_authors_checkpoint_to_basicsr_and_safetensors_and_back(tmp_path, authors_checkpoint, network, capsys):
    basicsr_file, safetensors_file = tmp_path / 'ESC_LTE.pth', tmp_path / 'ESC_LTE.safetensors'
    back = tmp_path / 'back.pth'
    assert main(['convert-weights', str(authors_checkpoint), str(basicsr_file)]) == 0
    assert 'param key params_ema' in capsys.readouterr().out
    converted = torch.load(basicsr_file, weights_only=True)
    assert list(converted) == ['params_ema'] and same(converted['params_ema'], network.state_dict())

    assert main(['convert-weights', str(basicsr_file), str(safetensors_file)]) == 0
    assert same(read_checkpoint(safetensors_file), network.state_dict())  # a flat state dict
    assert same(load_state_dict(safetensors_file, 'params_ema'), network.state_dict())

    assert main(['convert-weights', str(safetensors_file), str(back), '--param-key', 'params']) == 0
    assert list(torch.load(back, weights_only=True)) == ['params']


def test_param_key_selects_the_entry(tmp_path, network, capsys):
    ema = {key: value + 1 for key, value in network.state_dict().items()}
    source = tmp_path / 'net_g_latest.pth'
    torch.save({'params': network.state_dict(), 'params_ema': ema}, source)
    for key, expected in (('params', network.state_dict()), ('params_ema', ema)):
        target = tmp_path / f'{key}.safetensors'
        assert main(['convert-weights', str(source), str(target), '--param-key', key]) == 0
        assert same(read_checkpoint(target), expected)

    only_params = tmp_path / 'params_only.pth'
    torch.save({'params': network.state_dict()}, only_params)
    assert main(['convert-weights', str(only_params), str(tmp_path / 'x.pth')]) == 2
    assert "has no 'params_ema' entry" in capsys.readouterr().err
    assert not (tmp_path / 'x.pth').exists()


def test_refusals(tmp_path, authors_checkpoint, capsys):
    original = authors_checkpoint.read_bytes()
    assert main(['convert-weights', str(authors_checkpoint), str(authors_checkpoint)]) == 2
    assert 'refusing to overwrite the input' in capsys.readouterr().err
    assert authors_checkpoint.read_bytes() == original

    existing = tmp_path / 'existing.pth'
    existing.write_bytes(b'keep me')
    assert main(['convert-weights', str(authors_checkpoint), str(existing)]) == 2
    assert '--overwrite' in capsys.readouterr().err and existing.read_bytes() == b'keep me'
    assert main(['convert-weights', str(authors_checkpoint), str(existing), '--overwrite']) == 0
    assert 'params_ema' in torch.load(existing, weights_only=True)

    assert main(['convert-weights', str(authors_checkpoint), str(tmp_path / 'weights.onnx')]) == 2
    assert 'must end in .pth or .safetensors' in capsys.readouterr().err

    hostile = tmp_path / 'hostile.pth'
    torch.save({'params': RunsCode(tmp_path / 'pwned')}, hostile)
    assert main(['convert-weights', str(hostile), str(tmp_path / 'out.pth')]) == 2
    assert 'refused' in capsys.readouterr().err and not (tmp_path / 'pwned').exists()

    not_safetensors = tmp_path / 'fake.safetensors'
    not_safetensors.write_bytes(b'\x00' * 64)
    with pytest.raises(CheckpointError, match='not a readable safetensors file'):
        load_state_dict(not_safetensors)


def test_missing_safetensors_package_is_one_clear_message(tmp_path, authors_checkpoint, monkeypatch, capsys):
    safetensors_file = tmp_path / 'w.safetensors'
    assert main(['convert-weights', str(authors_checkpoint), str(safetensors_file)]) == 0
    monkeypatch.setitem(sys.modules, 'safetensors', None)  # import safetensors now raises ImportError
    monkeypatch.setitem(sys.modules, 'safetensors.torch', None)
    with pytest.raises(CheckpointError, match=r'needs the safetensors package: pip install "esc-arch\[safetensors\]"'):
        load_state_dict(safetensors_file)
    assert main(['convert-weights', str(authors_checkpoint), str(tmp_path / 'other.safetensors')]) == 2
    assert 'needs the safetensors package' in capsys.readouterr().err
    assert not list(tmp_path.glob('*other*'))  # nothing half-written left behind
