"""ESC networks: parity with the authors' outputs, loading, shapes, gradients and the building blocks."""
import io

import pytest
import torch
import torch.nn.functional as F
import yaml
from helpers import TINY, TINY_NETWORKS, perturbed

import esc_arch  # noqa: F401  (registers the networks; must precede basicsr)
from esc_arch import ESC, ESCFP, PRESETS, ConvAttn, ESCReal, LayerNorm2d, WindowAttention, build_preset, preset_config
from esc_arch.archs import ESCTrunk, SharedKernel, set_export_mode
from esc_arch.archs.layers import mirror_pad, working_layout
from esc_arch.checkpoint import adapt_state_dict, infer_network_config

from basicsr.archs import build_network
from basicsr.utils.registry import ARCH_REGISTRY

REAL_SCALES = (2, 4)
FIXTURES = ['ESC_x4', 'ESC_light_x2', 'ESC_FP_x3', 'ESC_XLsmall_ln_x4', 'ESCReal_x4']


def skip_unsupported_scale(kind, scale):
    if kind == 'ESCReal' and scale not in REAL_SCALES:
        pytest.skip(f'ESCReal has upsamplers for x{REAL_SCALES[0]} and x{REAL_SCALES[1]} only')


# The ESC paper's published parameter counts of each variant at x2, x3, x4.
PUBLISHED_PARAMS = {
    'ESC': {2: 946_728, 3: 955_383, 4: 967_500},
    'ESC-light': {2: 603_600, 3: 612_255, 4: 624_372},
    'ESC-FP': {2: 523_675, 3: 530_170, 4: 539_263},
    'ESC-Real': {4: 2_265_307},
}


def n_params(network):
    return sum(p.numel() for p in network.parameters())


# The naive backend at full size takes seconds per fixture: the full suite checks it; the fast loop checks sdpa
# (and test_attention_backends_agree checks naive against sdpa on the tiny networks).
@pytest.mark.parametrize('attn_type', [pytest.param('naive', marks=pytest.mark.slow), 'sdpa'])
@pytest.mark.parametrize('fixture', FIXTURES)
def test_reproduces_official_outputs(fixtures_dir, fixture, attn_type):
    record = torch.load(fixtures_dir / f'official_{fixture}.pt', weights_only=True)
    network = ARCH_REGISTRY.get(record['arch'])(**record['config'], attn_type=attn_type)
    network.load_state_dict(record['state_dict'], strict=True)
    assert n_params(network) == record['n_params']
    with torch.no_grad():
        y_eval = network.eval()(record['x_eval'])
        y_train = network.train()(record['x_train'])
    assert (y_eval - record['y_eval']).abs().max() < 1e-4
    assert (y_train - record['y_train']).abs().max() < 1e-4


@pytest.mark.parametrize('scale', [3, 4])
def test_scale_transfer_matches_official(fixtures_dir, scale):
    record = torch.load(fixtures_dir / 'official_scale_transfer_ESC_light_x2.pt', weights_only=True)
    network = ESC(**{**record['source_config'], 'upscaling_factor': scale})
    notes = []
    network.load_state_dict(adapt_state_dict(record['source_state_dict'], network, notes.append), strict=True)
    assert notes == [f'to_img resampled from x2 to x{scale}.']
    for name, expected in record['targets'][scale].items():
        assert torch.allclose(network.state_dict()[name], expected, atol=1e-6), name








@pytest.mark.parametrize('name, scale', [(n, s) for n, counts in PUBLISHED_PARAMS.items() for s in counts])
def test_preset_parameter_counts(name, scale):
    assert n_params(build_preset(name, scale)) == PUBLISHED_PARAMS[name][scale]


def test_esc_xl_is_about_12_5m_parameters():
    assert abs(n_params(build_preset('ESC-XL', 4)) - 12.5e6) < 0.05e6


def test_preset_names_are_case_insensitive_and_checked():
    assert preset_config('esc-light', scale=2)['n_blocks'] == 3
    assert preset_config('ESC-FP')['type'] == 'ESCFP'
    with pytest.raises(ValueError, match='unknown ESC preset'):
        preset_config('ESC-huge')
    assert preset_config('ESC-Real', scale=2)['upscaling_factor'] == 2
    with pytest.raises(ValueError, match='ESC-Real'):
        preset_config('ESC-Real', scale=3)
    assert set(PRESETS) == {'ESC', 'ESC-light', 'ESC-FP', 'ESC-XL', 'ESC-Real', 'ESC-LTE'}


@pytest.mark.parametrize('kind', list(TINY_NETWORKS))
def test_batch_equals_each_sample_in_eval_and_train(kind):
    network = perturbed(TINY_NETWORKS[kind]())
    x = torch.rand(3, 3, 11, 9)
    with torch.no_grad():
        batched = network.eval()(x)
        single = torch.cat([network(sample[None]) for sample in x])
        trained = network.train()(x)
    assert torch.allclose(batched, single, atol=1e-5)
    assert torch.allclose(batched, trained, atol=1e-6)


@pytest.mark.parametrize('kind', list(TINY_NETWORKS))
@pytest.mark.parametrize('height, width, scale', [(17, 23, 3), (5, 7, 4), (1, 1, 2), (3, 40, 4)])
def test_any_input_size(kind, height, width, scale):
    skip_unsupported_scale(kind, scale)
    network = perturbed(TINY_NETWORKS[kind](scale)).eval()
    with torch.no_grad():
        y = network(torch.rand(2, 3, height, width))
    assert y.shape == (2, 3, height * scale, width * scale)
    assert torch.isfinite(y).all()


def test_full_size_window_on_an_input_smaller_than_half_a_window():
    network = build_preset('ESC-light', 4).eval()
    with torch.no_grad():
        y = network(torch.rand(1, 3, 5, 7))
    assert y.shape == (1, 3, 20, 28) and torch.isfinite(y).all()


@pytest.mark.parametrize('kind, scale', [*((kind, 4) for kind in TINY_NETWORKS), ('ESCReal', 2), ('ESC', 3)])
def test_every_parameter_gets_a_gradient(kind, scale):
    network = perturbed(TINY_NETWORKS[kind](scale)).train()
    network(torch.rand(2, 3, 12, 10)).abs().mean().backward()
    for name, p in network.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize('kind', list(TINY_NETWORKS))
def test_convert_keeps_outputs(kind):
    network = perturbed(TINY_NETWORKS[kind]()).eval()
    x = torch.rand(1, 3, 10, 13)
    with torch.no_grad():
        before = network(x)
        after = network.convert()(x)
        reloaded = TINY_NETWORKS[kind]().eval()
        reloaded.load_state_dict(network.state_dict(), strict=True)
        again = reloaded(x)
    assert (before - after).abs().max() < 1e-5
    assert (before - again).abs().max() < 1e-5


@pytest.mark.parametrize('kind', list(TINY_NETWORKS))
@pytest.mark.parametrize('scale', [2, 3, 4])
def test_state_dict_round_trip(kind, scale):
    skip_unsupported_scale(kind, scale)
    network = perturbed(TINY_NETWORKS[kind](scale)).eval()
    buffer = io.BytesIO()
    torch.save(network.state_dict(), buffer)
    buffer.seek(0)
    copy = TINY_NETWORKS[kind](scale).eval()
    copy.load_state_dict(torch.load(buffer, weights_only=True), strict=True)
    x = torch.rand(1, 3, 9, 9)
    with torch.no_grad():
        assert torch.equal(network(x), copy(x))


def test_attention_backends_agree():
    network = perturbed(TINY_NETWORKS['ESC']()).eval()
    x = torch.rand(2, 3, 13, 19)
    outputs = {}
    with torch.no_grad():
        for attn_type in ['naive', 'sdpa', 'auto', 'flex']:
            network.attn_type = attn_type
            outputs[attn_type] = network(x)
    for attn_type, y in outputs.items():
        assert (y - outputs['naive']).abs().max() < 1e-4, attn_type


def test_sdpa_gradients_match_naive():
    # On CPU, sdpa's backward pass is ours (the fused kernel gives no gradient for the position bias).
    network = perturbed(TINY_NETWORKS['ESC']()).train()
    x = torch.rand(2, 3, 13, 19)
    weights = torch.rand(2, 3, 52, 76)
    gradients = {}
    for attn_type in ['naive', 'sdpa']:
        network.attn_type = attn_type
        network.zero_grad()
        (network(x) * weights).sum().backward()
        gradients[attn_type] = {name: p.grad.clone() for name, p in network.named_parameters()}
    for name, expected in gradients['naive'].items():
        assert (gradients['sdpa'][name] - expected).abs().max() <= 1e-4 * max(1, expected.abs().max()), name


def test_flex_refuses_backward_on_cpu():
    network = TINY_NETWORKS['ESC'](attn_type='flex').train()
    with pytest.raises(RuntimeError, match='no backward pass on CPU'):
        network(torch.rand(1, 3, 8, 8))


def test_authors_spellings_and_unknown_attn_type():
    for spelling in ['Naive', 'SDPA', 'Flex']:
        assert TINY_NETWORKS['ESC'](attn_type=spelling).attn_type == spelling.lower()
    with pytest.raises(ValueError, match='attn_type'):
        TINY_NETWORKS['ESC'](attn_type='flash')


@pytest.mark.parametrize('cls, kwargs, argument', [
    (ESC, dict(dim=16, pdim=32), 'pdim'),
    (ESC, dict(dim=18, num_heads=4), 'dim'),
    (ESCFP, dict(kernel_size=4), 'kernel_size'),
    (ESCReal, dict(upscaling_factor=3), 'upscaling_factor'),
    (ESCTrunk, dict(kernel_size=6), 'kernel_size'),
    (ESCTrunk, dict(conv_blocks=-1), 'conv_blocks'),
    (ESC, dict(upscaling_factor=0), 'upscaling_factor'),
    (ESC, dict(attn_type='fast'), 'attn_type'),
])
def test_invalid_arguments_name_the_argument(cls, kwargs, argument):
    with pytest.raises(ValueError, match=f'^{argument}'):
        cls(**kwargs)


def test_extra_repr_shows_hyperparameters_and_backend():
    text = repr(TINY_NETWORKS['ESC'](3))
    assert 'dim=16, pdim=8, kernel_size=5' in text and 'upscaling_factor=3' in text
    assert 'attn_type=auto (sdpa on cpu)' in text
    assert 'window_size=8, num_heads=2, attn_type=auto' in text


@pytest.mark.parametrize('name', ['ESC', 'ESC-FP', 'ESC-Real'])
def test_build_network_from_inline_yaml(name):
    config = {**preset_config(name, 4), 'n_blocks': 1, 'conv_blocks': 1, 'window_size': 8}
    text = 'network_g:\n' + ''.join(f'  {key}: {value}\n' for key, value in config.items())
    network = build_network(yaml.safe_load(text)['network_g'])
    assert type(network).__name__ == config['type']
    assert network(torch.rand(1, 3, 6, 6)).shape == (1, 3, 24, 24)


def test_build_network_accepts_authors_yaml_spelling():
    text = """
network_g:
  type: ESC
  dim: 16
  pdim: 8
  kernel_size: 5
  n_blocks: 1
  conv_blocks: 1
  window_size: 8
  num_heads: 2
  upscaling_factor: 2
  exp_ratio: 1.25
  attn_type: SDPA
  use_ln: false
"""
    network = build_network(yaml.safe_load(text)['network_g'])
    assert network.attn_type == 'sdpa'


@pytest.mark.parametrize('pad', [(0, 3, 0, 2), (2, 2, 1, 1), (0, 9, 0, 13), (5, 5, 4, 4)])
def test_mirror_pad_extends_reflect_padding(pad):
    x = torch.rand(1, 2, 4, 5)
    y = mirror_pad(x, pad)
    assert y.shape == (1, 2, 4 + pad[2] + pad[3], 5 + pad[0] + pad[1])
    if max(pad[2:]) < 4 and max(pad[:2]) < 5:
        assert torch.equal(y, F.pad(x, pad, mode='reflect'))
    assert torch.equal(y[..., pad[2]:pad[2] + 4, pad[0]:pad[0] + 5], x)
    assert torch.equal(mirror_pad(torch.ones(1, 1, 1, 1), pad), torch.ones(1, 1, 1 + pad[2] + pad[3],
                                                                             1 + pad[0] + pad[1]))


def test_mirror_pad_keeps_bouncing_off_the_edges():
    column = mirror_pad(torch.arange(4.).view(1, 1, 4, 1), (0, 0, 2, 9)).flatten().tolist()
    assert column == [2, 1, 0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0]


def test_blocks_work_on_their_own():
    layer_norm = LayerNorm2d(8)
    x = torch.randn(2, 8, 5, 6)
    assert torch.allclose(layer_norm(x), F.layer_norm(x.permute(0, 2, 3, 1), (8,), eps=1e-6).permute(0, 3, 1, 2),
                          atol=1e-5)
    attention = WindowAttention(dim=8, window_size=4, num_heads=2)
    assert attention(x).shape == x.shape
    conv_attn = ConvAttn(pdim=4)
    y = conv_attn(x, SharedKernel(torch.randn(4, 4, 7, 7)))
    assert y.shape == x.shape and torch.equal(y[:, 4:], x[:, 4:])


def test_trunk_has_the_keys_of_esc_less_its_head():
    network = perturbed(TINY_NETWORKS['ESC']()).eval()
    trunk = ESCTrunk(**TINY).eval()
    head = {'to_img.weight', 'to_img.bias'}
    assert set(trunk.state_dict()) == set(network.state_dict()) - head
    trunk.load_state_dict({k: v for k, v in network.state_dict().items() if k not in head}, strict=True)
    x = torch.rand(2, 3, 11, 9)
    with torch.no_grad():
        features = trunk(x)
        expected = network.features(working_layout(x))
    assert features.shape == (2, TINY['dim'], 11, 9)
    assert torch.equal(features, expected)


def test_networks_keep_flat_keys_and_share_the_trunk():
    assert isinstance(TINY_NETWORKS['ESC'](), ESCTrunk) and isinstance(TINY_NETWORKS['ESCReal'](), ESCTrunk)
    for kind, network in ((kind, build()) for kind, build in TINY_NETWORKS.items()):
        assert 'proj.weight' in network.state_dict() and not any(k.startswith('trunk.') for k in network.state_dict())


@pytest.mark.parametrize('kind', list(TINY_NETWORKS))
@pytest.mark.parametrize('shape', [(1, 3, 11, 13), (2, 3, 11, 13), (2, 3, 3, 2)])
def test_export_path_computes_the_same_function(kind, shape):
    # (3, 2) is smaller than half a window (8): the attention padding mirrors more than once.
    network = perturbed(TINY_NETWORKS[kind]()).eval()
    x = torch.rand(shape)
    with torch.no_grad():
        normal = network(x)
        exported = set_export_mode(network, True)(x)
        assert all(m.export_mode for m in network.modules() if hasattr(m, 'export_mode'))
        back = set_export_mode(network, False)(x)
    assert (normal - exported).abs().max() < 1e-5
    assert torch.equal(normal, back)


@pytest.mark.parametrize('scale', REAL_SCALES)
def test_esc_real_scales_are_read_back_from_the_weights(scale):
    network = perturbed(TINY_NETWORKS['ESCReal'](scale)).eval()
    assert network(torch.rand(2, 3, 7, 5)).shape == (2, 3, 7 * scale, 5 * scale)
    config = infer_network_config(network.state_dict())
    assert config == {'type': 'ESCReal', **TINY, 'upscaling_factor': scale, 'exp_ratio': 2.0}
    rebuilt = ESCReal(**{k: v for k, v in config.items() if k != 'type'})
    rebuilt.load_state_dict(network.state_dict(), strict=True)


def test_esc_real_x4_upsampler_keeps_the_authors_layout():
    keys = {k for k in ESCReal(**TINY).state_dict() if k.startswith('to_img.')}
    assert keys == {f'to_img.{i}.{name}' for i in (1, 4, 6, 8) for name in ('weight', 'bias')}
