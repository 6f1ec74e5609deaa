"""One construction path: presets (ESC-LTE included), options files, network_g options -> build_network; configs."""
import pytest
import torch
import torch.nn.functional as F
from helpers import TINY, TINY_LTE, one_line_error, write_yaml
from torch import nn

import esc_arch  # noqa: F401  (registers the networks)
from esc_arch.archs import (
    ESC,
    ESCFP,
    ESCLTE,
    PRESETS,
    Bicubic,
    ESCReal,
    ESCTrunk,
    build_network,
    build_preset,
    network_options,
    preset_config,
    read_network_options,
)
from esc_arch.checkpoint import infer_network_config
from esc_arch.errors import OptionsError
from esc_arch.profiling import profile_network

NETWORKS = {
    'ESC': dict(type='ESC', **TINY, upscaling_factor=3),
    'ESC-ln': dict(type='ESC', **TINY, upscaling_factor=2, use_ln=True),
    'ESCFP': dict(type='ESCFP', **TINY, upscaling_factor=4),
    'ESCReal': dict(type='ESCReal', **TINY, upscaling_factor=2),
    'ESCLTE': dict(type='ESCLTE', **TINY_LTE),
}


@pytest.mark.parametrize('cls', [ESC, ESCFP, ESCReal, ESCLTE, ESCTrunk, Bicubic])
def test_constructors_take_keywords_only(cls):
    with pytest.raises(TypeError, match='positional'):
        cls(16)


@pytest.mark.parametrize('kind', list(NETWORKS))
def test_config_rebuilds_the_network_and_is_what_the_weights_say(kind):
    network = build_network(NETWORKS[kind])
    config = network.config
    assert {key: value for key, value in config.items() if key in NETWORKS[kind]} == NETWORKS[kind]
    assert 'attn_type' not in config  # a run-time choice, not stored in the weights
    assert infer_network_config(network.state_dict()) == config
    rebuilt = build_network(config)
    rebuilt.load_state_dict(network.state_dict(), strict=True)
    assert rebuilt.config == config
    config['dim'] = 1  # a copy
    assert network.config['dim'] == TINY['dim']


@pytest.mark.parametrize('name', list(PRESETS))
def test_presets_are_their_networks_configs(name):
    preset = PRESETS[name]
    for scale in preset.scales or (None, ):
        with torch.device('meta'):
            network = build_preset(name, scale)
        expected = {**preset_config(name, scale)}
        assert {key: value for key, value in network.config.items() if key in expected} == expected
        assert type(network).__name__ == preset.options['type']


def test_sources_preset_file_and_options(tmp_path):
    options = dict(type='ESC', **TINY, upscaling_factor=4)
    path = write_yaml(tmp_path / 'net.yml', {'scale': 2, 'network_g': options})
    assert read_network_options(path) == options
    assert network_options(path, 2) == {**options, 'upscaling_factor': 2}
    assert network_options(options, 3, attn_type='naive') == {**options, 'upscaling_factor': 3, 'attn_type': 'naive'}
    assert network_options('esc-light', 2) == preset_config('ESC-light', 2)
    assert build_network(path, 2).upscaling_factor == 2
    assert build_network(options).attn_type == 'auto'
    assert build_preset('ESC-light', attn_type='naive').attn_type == 'naive'
    lte = build_network('esc-lte', 3.5)  # an arbitrary-scale network takes no scale option
    assert isinstance(lte, ESCLTE) and lte.config == build_network('ESC-LTE').config


def test_other_registered_networks_get_the_scale_on_their_own_argument():
    swinir = dict(type='SwinIR', upscale=2, img_size=16, window_size=8, depths=[1], embed_dim=12, num_heads=[2],
                  mlp_ratio=2, upsampler='pixelshuffledirect')
    assert build_network(swinir, 3).upscale == 3
    assert build_network({'type': 'Bicubic'}, 2).config == {'type': 'Bicubic', 'upscaling_factor': 2}


def test_options_files_are_read_safely(tmp_path):
    evil = tmp_path / 'evil.yml'
    evil.write_text('network_g: !!python/object/apply:os.system ["echo owned"]\n')
    with pytest.raises(OptionsError, match='never Python objects'):
        build_network(evil)
    twice = tmp_path / 'twice.yml'
    twice.write_text('network_g:\n  type: ESC\n  dim: 16\n  dim: 32\n')
    with pytest.raises(OptionsError, match='given twice'):
        build_network(twice)
    for text, message in (('scale: 2\n', 'has no network_g section'), ('network_g:\n  dim: 2\n', 'has no type')):
        (tmp_path / 'bad.yml').write_text(text)
        with pytest.raises(OptionsError, match=message):
            build_network(tmp_path / 'bad.yml')
    with pytest.raises(OptionsError, match='cannot read options file'):
        build_network(tmp_path / 'missing.yml')


def test_bad_options_are_one_line_errors():
    with pytest.raises(OptionsError, match=r'^unknown ESC preset .*ESC-LTE, or give an options file'):
        build_network('ESC-huge')
    with pytest.raises(OptionsError, match=r"network type 'NoSuchNet' is not registered"):
        build_network({'type': 'NoSuchNet'})
    with pytest.raises(OptionsError, match=r'^network_g \(ESC\): pdim \(32\) must not exceed dim \(16\)'):
        build_network(dict(type='ESC', **{**TINY, 'pdim': 32}))
    with pytest.raises(OptionsError, match=r"^preset ESC \(ESC\): .*unexpected keyword argument 'depth'"):
        build_network('ESC', depth=3)


@pytest.mark.parametrize('name, scale', [('ESC', 5), ('ESC', 2.5), ('ESC', 8), ('ESC-FP', 5), ('ESC-Real', 3)])
def test_a_preset_at_a_scale_it_is_not_offered_at(name, scale):
    offered = 'x2, x4' if name == 'ESC-Real' else 'x2, x3, x4'
    with pytest.raises(OptionsError, match=f'^{name} is offered at scales {offered}, not x{scale}$'):
        build_preset(name, scale)


@pytest.mark.parametrize('scale', ['5', '2.5', '8'])
def test_profile_names_the_scales_a_preset_is_offered_at(capsys, scale):
    one_line_error(capsys, ['profile', '--model', 'ESC', '--scale', scale],
                   f'ESC is offered at scales x2, x3, x4, not x{scale}')


def test_export_onnx_names_the_scales_a_preset_is_offered_at(tmp_path, capsys):
    output = tmp_path / 'x.onnx'
    one_line_error(capsys, ['export-onnx', '--model', 'ESC-FP', '--scale', '5', '-o', str(output)],
                   'ESC-FP is offered at scales x2, x3, x4, not x5')
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------ FLOPs of resampling, as fvcore counts them


def test_resampling_is_counted_per_output_element():
    class Resampling(nn.Module):
        def forward(self, x):
            grid = torch.zeros(x.shape[0], 5, 7, 2, device=x.device)
            return (F.interpolate(x, scale_factor=2, mode='nearest').sum()
                    + F.interpolate(x, scale_factor=2, mode='bilinear').sum()
                    + F.interpolate(x, scale_factor=2, mode='bicubic').sum()  # not counted by fvcore
                    + F.grid_sample(x, grid, mode='nearest', align_corners=False).sum())

    profile = profile_network(Resampling(), scale=2, output_size=(40, 20))  # input 3x20x10, outputs 3x40x20
    outputs = 3 * 40 * 20
    assert profile.breakdown['resampling'] == 1 * outputs + 4 * outputs + 4 * 3 * 5 * 7
    assert profile.flops == profile.breakdown['resampling']


def test_esc_real_x4_counts_as_fvcore_on_the_authors_code():
    with torch.device('meta'):
        network = build_preset('ESC-Real', 4)
    profile = profile_network(network, 4)
    assert f'{profile.flops / 1e9:.2f}' == '391.80'  # fvcore on the authors' ESC-Real x4
    # the two nearest x2 upsamplings of 64 channels: to 640x360, then to 1280x720
    assert profile.breakdown['resampling'] == 64 * (640 * 360 + 1280 * 720)


def test_esc_lte_counts_its_grid_samples():
    network = ESCLTE(**TINY_LTE)
    profile = profile_network(network, 2.5, (50, 30))
    queries, maps = 50 * 30, 2 * TINY_LTE['hidden_dim'] + 2  # coef, freq and the LR coordinates
    # per query: four nearest look-ups of the maps and one bilinear sample of the RGB input, 4 FLOPs per value
    assert profile.breakdown['resampling'] == 4 * queries * (4 * maps + 3)
