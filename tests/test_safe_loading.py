"""Every weights load in a run is safe, BasicSR's own ``torch.load`` calls included, whatever
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` says: the ``weights-only-torch-load`` row of esc_arch/compat/table.py
(applied by conftest.py, as by every ``basicsr`` command and ``apply_all()``)."""
import os

import pytest
import torch
from helpers import MSRRESNET, make_pairs, one_line_error, srmodel_test_options, write_yaml

from esc_arch.compat import apply, is_applied, undo
from esc_arch.compat.table import patches_named
from esc_arch.errors import CheckpointError

WEIGHTS_ONLY, = patches_named('weights-only-torch-load')
class RunsCode:
    """Unpickling it makes the folder ``marker``: proof that the file ran code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker, )


@pytest.fixture
def hostile(tmp_path, monkeypatch):
    """A checkpoint that runs code when unpickled, with torch's safe default turned off; returns (path, marker)."""
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    marker = tmp_path / 'code_ran'
    path = tmp_path / 'hostile.pth'
    torch.save({'params': {'weight': RunsCode(marker)}}, path)
    return path, marker


def test_without_the_patch_the_environment_variable_lets_a_pickle_run(hostile):
    """The failure the patch addresses: torch.load without weights_only, as BasicSR calls it."""
    path, marker = hostile
    assert is_applied(WEIGHTS_ONLY)
    undo(WEIGHTS_ONLY)
    try:
        with pytest.warns(UserWarning, match='TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'):
            torch.load(path)
    finally:
        apply(WEIGHTS_ONLY)
    assert marker.is_dir()


def _sr_model(path):
    from basicsr.models import build_model

    return build_model({'model_type': 'SRModel', 'num_gpu': 0, 'is_train': False, 'dist': False, 'scale': 4,
                        'network_g': MSRRESNET,
                        'path': {'pretrain_network_g': str(path), 'strict_load_g': True, 'param_key_g': 'params'}})


def _spynet(path):
    from basicsr.archs.spynet_arch import SpyNet

    return SpyNet(load_path=str(path))


def _basicvsr(path):
    from basicsr.archs.basicvsr_arch import BasicVSR

    return BasicVSR(num_feat=8, num_block=1, spynet_path=str(path))


@pytest.mark.parametrize('load', [
    pytest.param(torch.load, id='torch.load'),
    pytest.param(lambda path: torch.load(path, weights_only=False), id='torch.load weights_only=False'),
    pytest.param(_sr_model, id='SRModel pretrain_network_g'),
    pytest.param(_spynet, id='SpyNet load_path'),
    pytest.param(_basicvsr, id='BasicVSR spynet_path'),
])
def test_basicsr_loads_refuse_a_pickle_that_would_run_code(hostile, load):
    path, marker = hostile
    with pytest.raises(CheckpointError, match=f'{path} was refused: loading it would run code .*GLOBAL posix.mkdir'):
        load(path)
    assert not marker.exists()


def test_plain_weights_still_load_whatever_the_caller_asks(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    weights = {'params': {'weight': torch.arange(4.0)}}
    torch.save(weights, tmp_path / 'plain.pth')
    for loaded in (torch.load(tmp_path / 'plain.pth'), torch.load(tmp_path / 'plain.pth', weights_only=False)):
        torch.testing.assert_close(loaded, weights)


def test_basicsr_test_with_an_srmodel_refuses_a_hostile_pretrained_network_in_one_line(
        hostile, tmp_path, monkeypatch, capsys):
    path, marker = hostile
    monkeypatch.chdir(tmp_path)
    data = make_pairs(tmp_path / 'set')
    options = write_yaml(tmp_path / 'test.yml', srmodel_test_options(data, 'srmodel', pretrain=path))
    one_line_error(capsys, ['test', '-opt', options], 'was refused')
    assert not marker.exists()


def test_a_callers_own_restricted_unpickler_is_kept_and_plain_pickle_is_not(hostile):
    import pickle

    path, marker = hostile

    class Restricted(pickle.Unpickler):
        def find_class(self, module, name):
            raise pickle.UnpicklingError(f'{module}.{name} is not allowed here')

    restricted = type('restricted_pickle', (), {'Unpickler': Restricted, 'load': pickle.load, '__name__': 'r'})
    with pytest.raises(pickle.UnpicklingError, match='is not allowed here'):
        torch.load(path, pickle_module=restricted, weights_only=False)
    with pytest.raises(CheckpointError, match='was refused'):
        torch.load(path, pickle_module=pickle, weights_only=False)
    assert not marker.exists()
