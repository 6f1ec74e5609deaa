"""spandrel integration: every hyperparameter detected from the weights, working descriptors, half precision."""
import pytest
import torch
from helpers import TINY, perturbed

from esc_arch.archs import ESC, ESCFP, ESCReal, build_preset

spandrel = pytest.importorskip('spandrel', reason='the spandrel extra is not installed (pip install spandrel)')
from esc_arch.integrations.spandrel import ARCHITECTURES, add_to_spandrel  # noqa: E402  (needs spandrel)

BASE = dict(TINY, exp_ratio=1.25)
VARIATIONS = [
    {},
    dict(dim=24, pdim=12, kernel_size=7, n_blocks=2, conv_blocks=3, window_size=4, num_heads=3, exp_ratio=2.0),
    dict(dim=20, pdim=4, kernel_size=3, n_blocks=3, conv_blocks=2, window_size=6, num_heads=5, exp_ratio=1.5),
]
GRID = [(ESC, dict(variation, upscaling_factor=scale, use_ln=use_ln))
        for variation, scale, use_ln in zip(VARIATIONS, (2, 3, 4), (False, True, False))]
GRID += [(ESC, dict(VARIATIONS[1], upscaling_factor=1, use_ln=False))]
GRID += [(ESCFP, dict(variation, upscaling_factor=scale)) for variation, scale in zip(VARIATIONS, (4, 2, 3))]
GRID += [(ESCReal, dict(variation, upscaling_factor=scale)) for variation, scale in zip(VARIATIONS, (4, 2, 4))]


@pytest.fixture(scope='module', autouse=True)
def registered():
    add_to_spandrel()


def _hyperparameters(network):
    names = ('dim', 'pdim', 'kernel_size', 'n_blocks', 'conv_blocks', 'window_size', 'num_heads',
             'upscaling_factor', 'exp_ratio', 'use_ln')
    return {name: getattr(network, name) for name in names if hasattr(network, name)}


@pytest.mark.parametrize('network_class, options', GRID, ids=lambda value: getattr(value, '__name__', ''))
def test_round_trip_through_a_file(tmp_path, network_class, options):
    network = perturbed(network_class(**{**BASE, **options})).eval()
    torch.save({'params_ema': network.state_dict()}, tmp_path / 'model.pth')
    descriptor = spandrel.ModelLoader().load_from_file(tmp_path / 'model.pth')

    assert descriptor.architecture.id == network_class.__name__
    assert type(descriptor.model) is network_class
    assert _hyperparameters(descriptor.model) == _hyperparameters(network)
    assert descriptor.scale == network.upscaling_factor
    assert descriptor.purpose == ('SR' if network.upscaling_factor > 1 else 'Restoration')
    assert (descriptor.input_channels, descriptor.output_channels) == (3, 3)
    assert descriptor.size_requirements.none  # any height and width
    image = torch.rand(1, 3, 11, 14)
    with torch.no_grad():
        expected = network(image).clamp(0, 1)
    assert torch.allclose(descriptor(image), expected, atol=1e-5)


@pytest.mark.parametrize('network_class', [ESC, ESCFP, ESCReal])
def test_half_precision_as_advertised(network_class):
    network = perturbed(network_class(**BASE)).eval()
    descriptor = spandrel.ModelLoader().load_from_state_dict(network.state_dict())
    image = torch.rand(1, 3, 12, 10)
    reference = descriptor(image)
    assert descriptor.supports_half and descriptor.supports_bfloat16
    for dtype, tolerance in ((torch.float16, 1e-2), (torch.bfloat16, 5e-2)):
        descriptor.to(dtype)
        assert (descriptor(image.to(dtype)).float() - reference).abs().max() < tolerance, dtype
        descriptor.float()


def test_published_presets_are_named():
    descriptor = spandrel.ModelLoader().load_from_state_dict(build_preset('ESC-light', scale=2).state_dict())
    assert descriptor.architecture.id == 'ESC' and descriptor.tags[0] == 'ESC-light' and descriptor.scale == 2


def test_only_esc_weights_are_claimed():
    foreign = spandrel.architectures.Compact.Compact(num_conv=4).state_dict()
    assert not any(arch.detect(foreign) for arch in ARCHITECTURES)
    esc = ESC(**BASE).state_dict()
    claims = [arch.architecture.id for arch in spandrel.MAIN_REGISTRY.architectures('detection') if arch.detect(esc)]
    assert claims == ['ESC']  # neither ESCFP/ESCReal nor any built-in architecture


def test_adding_twice_changes_nothing():
    registry = spandrel.MAIN_REGISTRY.copy()
    assert add_to_spandrel(registry) == []
    assert len(registry) == len(spandrel.MAIN_REGISTRY)
