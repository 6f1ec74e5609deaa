"""``basicsr convert-weights`` and reading the authors' arbitrary-scale checkpoints and .safetensors files."""
import errno
import pathlib
import struct
import sys
import time
import zipfile

import pytest
import torch
from helpers import TINY_ESC, TINY_LTE, RunsCode, perturbed, write_yaml

from esc_arch.archs.esc import ESC
from esc_arch.archs.esc_lte import ESCLTE
from esc_arch.checkpoint import ZIP_EXPANSION_MARGIN, load_state_dict, read_checkpoint
from esc_arch.cli import main
from esc_arch.errors import CheckpointError


@pytest.fixture
def tiny_lte_yaml(tmp_path):
    """The options naming the tiny ESC+LTE: its weights are checked against it (not the published size)."""
    path = tmp_path / 'tiny_lte.yml'
    write_yaml(path, {'network_g': dict(type='ESCLTE', **TINY_LTE)})
    return str(path)


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


def test_authors_checkpoint_to_basicsr_and_safetensors_and_back(tmp_path, authors_checkpoint, network, capsys,
                                                                tiny_lte_yaml):
    basicsr_file, safetensors_file = tmp_path / 'ESC_LTE.pth', tmp_path / 'ESC_LTE.safetensors'
    back = tmp_path / 'back.pth'
    model = ['--model', tiny_lte_yaml]
    assert main(['convert-weights', str(authors_checkpoint), str(basicsr_file), *model]) == 0
    assert 'param key params_ema' in capsys.readouterr().out
    converted = torch.load(basicsr_file, weights_only=True)
    assert list(converted) == ['params_ema'] and same(converted['params_ema'], network.state_dict())

    assert main(['convert-weights', str(basicsr_file), str(safetensors_file), *model]) == 0
    assert same(read_checkpoint(safetensors_file), network.state_dict())  # a flat state dict
    assert same(load_state_dict(safetensors_file, 'params_ema'), network.state_dict())

    assert main(['convert-weights', str(safetensors_file), str(back), '--param-key', 'params', *model]) == 0
    assert list(torch.load(back, weights_only=True)) == ['params']


def test_param_key_selects_the_entry(tmp_path, network, capsys, tiny_lte_yaml):
    ema = {key: value + 1 for key, value in network.state_dict().items()}
    source = tmp_path / 'net_g_latest.pth'
    torch.save({'params': network.state_dict(), 'params_ema': ema}, source)
    for key, expected in (('params', network.state_dict()), ('params_ema', ema)):
        target = tmp_path / f'{key}.safetensors'
        assert main(['convert-weights', str(source), str(target), '--param-key', key, '--model', tiny_lte_yaml]) == 0
        assert same(read_checkpoint(target), expected)

    only_params = tmp_path / 'params_only.pth'
    torch.save({'params': network.state_dict()}, only_params)
    assert main(['convert-weights', str(only_params), str(tmp_path / 'x.pth')]) == 2
    assert "has no 'params_ema' entry" in capsys.readouterr().err
    assert not (tmp_path / 'x.pth').exists()


def test_refusals(tmp_path, authors_checkpoint, capsys, tiny_lte_yaml):
    original = authors_checkpoint.read_bytes()
    assert main(['convert-weights', str(authors_checkpoint), str(authors_checkpoint)]) == 2
    assert 'refusing to overwrite the input' in capsys.readouterr().err
    assert authors_checkpoint.read_bytes() == original

    existing = tmp_path / 'existing.pth'
    existing.write_bytes(b'keep me')
    assert main(['convert-weights', str(authors_checkpoint), str(existing)]) == 2
    assert '--overwrite' in capsys.readouterr().err and existing.read_bytes() == b'keep me'
    overwrite = ['--overwrite', '--model', tiny_lte_yaml]
    assert main(['convert-weights', str(authors_checkpoint), str(existing), *overwrite]) == 0
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


def test_missing_safetensors_package_is_one_clear_message(tmp_path, authors_checkpoint, monkeypatch, capsys,
                                                         tiny_lte_yaml):
    safetensors_file = tmp_path / 'w.safetensors'
    assert main(['convert-weights', str(authors_checkpoint), str(safetensors_file), '--model', tiny_lte_yaml]) == 0
    monkeypatch.setitem(sys.modules, 'safetensors', None)  # import safetensors now raises ImportError
    monkeypatch.setitem(sys.modules, 'safetensors.torch', None)
    with pytest.raises(CheckpointError, match=r'needs the safetensors package: pip install "esc-arch\[safetensors\]"'):
        load_state_dict(safetensors_file)
    assert main(['convert-weights', str(authors_checkpoint), str(tmp_path / 'other.safetensors'), '--model',
                 tiny_lte_yaml]) == 2
    assert 'needs the safetensors package' in capsys.readouterr().err
    assert not list(tmp_path.glob('*other*'))  # nothing half-written left behind


# ---------------------------------------------------------------- what is written is checked first

@pytest.fixture
def esc_weights():
    torch.manual_seed(0)
    return perturbed(ESC(**{key: value for key, value in TINY_ESC.items() if key != 'type'})).state_dict()


def _refused(capsys, tmp_path, state_dict, message, *options):
    source, target = tmp_path / 'in.pth', tmp_path / 'out' / 'out.pth'
    torch.save({'params_ema': state_dict}, source)
    assert main(['convert-weights', str(source), str(target), *options]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and '\n' not in err and 'Traceback' not in err, err
    assert not target.parent.exists()  # nothing created
    return err


def test_meta_and_sparse_tensors_are_refused(tmp_path, capsys, esc_weights):
    key = 'proj.weight'
    meta = dict(esc_weights, **{key: torch.empty(esc_weights[key].shape, device='meta')})
    _refused(capsys, tmp_path, meta, f'holds a meta tensor at params_ema.{key}')
    sparse = dict(esc_weights, **{key: esc_weights[key].to_sparse()})
    _refused(capsys, tmp_path, sparse, f'holds a torch.sparse_coo tensor at params_ema.{key}')


@pytest.mark.parametrize('dtype', [torch.int32, torch.bool, torch.complex64])
def test_weights_that_are_not_floating_point_are_refused(tmp_path, capsys, esc_weights, dtype):
    odd = dict(esc_weights, **{'proj.weight': esc_weights['proj.weight'].to(dtype)})
    _refused(capsys, tmp_path, odd, 'proj.weight is ' + str(dtype).removeprefix('torch.'))


def test_float64_weights_need_an_explicit_dtype(tmp_path, capsys, esc_weights):
    double = {key: value.double() for key, value in esc_weights.items()}
    _refused(capsys, tmp_path, double, 'is float64; the networks use float32, float16, bfloat16: pass --dtype float32')
    source, target = tmp_path / 'in.pth', tmp_path / 'out.pth'
    assert main(['convert-weights', str(source), str(target), '--dtype', 'float32']) == 0
    assert 'float32, param key params_ema' in capsys.readouterr().out
    written = torch.load(target, weights_only=True)['params_ema']
    assert all(value.dtype == torch.float32 and torch.equal(value, esc_weights[key]) for key, value in written.items())


def test_wrong_shapes_and_foreign_keys_are_refused(tmp_path, capsys, esc_weights):
    _refused(capsys, tmp_path, dict(esc_weights, extra=torch.zeros(3)), 'unexpected extra')
    resized = dict(esc_weights, **{'blocks.0.convffns.0.proj.weight': torch.zeros(1, 1, 1, 1)})
    _refused(capsys, tmp_path, resized, 'does not fit the network')
    foreign = {'conv_first.weight': torch.zeros(64, 3, 3, 3), 'conv_last.weight': torch.zeros(3, 64, 3, 3)}
    _refused(capsys, tmp_path, foreign, 'name its network with --model')


def test_output_under_a_file_is_one_line(tmp_path, capsys, esc_weights):
    source = tmp_path / 'in.pth'
    torch.save({'params_ema': esc_weights}, source)
    (tmp_path / 'a_file').write_text('keep')
    assert main(['convert-weights', str(source), str(tmp_path / 'a_file' / 'out.pth')]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith('basicsr convert-weights: error: cannot write') and '\n' not in err
    assert (tmp_path / 'a_file').read_text() == 'keep'


@pytest.mark.parametrize('code', [errno.EROFS, errno.ENOSPC])
def test_read_only_or_full_disk_is_one_line_and_leaves_nothing(tmp_path, capsys, esc_weights, monkeypatch, code):
    source, target = tmp_path / 'in.pth', tmp_path / 'out.safetensors'
    torch.save({'params_ema': esc_weights}, source)

    def fail(self, data):  # injected: root may write into read-only folders, and no disk is full here
        raise OSError(code, errno.errorcode[code])
    monkeypatch.setattr(pathlib.Path, 'write_bytes', fail)
    assert main(['convert-weights', str(source), str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f'basicsr convert-weights: error: cannot write {target}') and '\n' not in err
    assert sorted(path.name for path in tmp_path.iterdir()) == ['in.pth']


def _zip_bomb(path, declared):
    """A real checkpoint whose zip central directory declares ``declared`` bytes for its data.pkl."""
    torch.save({'params_ema': {'x': torch.zeros(2)}}, path)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        name = next(entry.filename for entry in archive.infolist() if entry.filename.endswith('data.pkl'))
    header = data.index(b'PK\x01\x02')  # central directory entries: name at offset 46
    while data[header + 46:header + 46 + len(name)] != name.encode():
        header = data.index(b'PK\x01\x02', header + 4)
    struct.pack_into('<I', data, header + 24, declared)  # uncompressed size
    path.write_bytes(bytes(data))


def test_a_zip_declaring_far_more_than_it_holds_is_refused_before_loading(tmp_path, capsys):
    bomb = tmp_path / 'bomb.pth'
    _zip_bomb(bomb, 1 << 30)
    started = time.monotonic()
    with pytest.raises(CheckpointError, match='zip entries declare 1,073,741,8.. bytes in a .*decompression bomb'):
        load_state_dict(bomb)  # every weights load goes through the one safe loader
    assert time.monotonic() - started < 5
    assert main(['convert-weights', str(bomb), str(tmp_path / 'out.pth')]) == 2
    assert 'decompression bomb' in capsys.readouterr().err and not (tmp_path / 'out.pth').exists()
    _zip_bomb(bomb, ZIP_EXPANSION_MARGIN // 2)  # within the margin: the size check lets torch.load decide
    with pytest.raises(CheckpointError, match='not a readable PyTorch checkpoint'):
        load_state_dict(bomb)
