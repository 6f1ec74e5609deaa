"""FLOPs and parameters (``basicsr profile``): the paper's Table 2 counts, in fvcore's convention."""
import time

import pytest
import torch
from helpers import TINY, write_yaml
from torch import nn

from esc_arch import build_preset
from esc_arch.cli import main
from esc_arch.profiling import profile_network

# Paper, Table 2 (G at 1280x720 output), and the networks' exact parameter counts.
TABLE_2 = {
    ('ESC', 2): (592.0, 946_728), ('ESC', 3): (267.6, 955_383), ('ESC', 4): (149.2, 967_500),
    ('ESC-light', 2): (359.4, 603_600), ('ESC-light', 3): (162.8, 612_255), ('ESC-light', 4): (91.0, 624_372),
    ('ESC-FP', 2): (239.8, 523_675), ('ESC-FP', 3): (110.0, 530_170), ('ESC-FP', 4): (60.8, 539_263),
}


@pytest.mark.parametrize('variant, scale', list(TABLE_2))
def test_table_2_flops_and_params(variant, scale):
    expected_flops, expected_params = TABLE_2[variant, scale]
    network = build_preset(variant, scale=scale)
    start = time.perf_counter()
    profile = profile_network(network, scale)
    assert time.perf_counter() - start < 30  # counted on the meta device, not computed
    assert f'{profile.flops / 1e9:.1f}' == f'{expected_flops:.1f}'
    assert profile.params == expected_params
    assert profile.input_size == (1280 // scale, 720 // scale) and profile.output_size == (1280, 720)
    assert next(network.parameters()).device.type == 'cpu' and network.attn_type == 'auto'  # left as it was


def test_esc_x4_split_matches_fvcore_on_the_authors_code():
    # fvcore on the authors' ESC x4: conv 108.63, matmul 40.27, LayerNorm 0.28, pooling 0.02 G
    breakdown = profile_network(build_preset('ESC', scale=4), 4).breakdown
    assert {kind: round(value / 1e9, 2) for kind, value in breakdown.items()} == {
        'conv': 108.63, 'matmul': 40.27, 'layer_norm': 0.28, 'pooling': 0.02, 'resampling': 0}


def test_counting_convention_on_a_known_network():
    network = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.GELU(), nn.LayerNorm([20]), nn.AdaptiveAvgPool2d(1),
                            nn.Flatten(), nn.Linear(8, 5), nn.Softmax(-1))
    profile = profile_network(network, scale=2, output_size=(40, 20))  # input 20x10
    pixels = 20 * 10
    assert profile.breakdown == {'conv': 3 * 8 * 9 * pixels, 'matmul': 8 * 5, 'layer_norm': 5 * 8 * pixels,
                                 'pooling': 8 * pixels, 'resampling': 0}
    assert profile.params == sum(parameter.numel() for parameter in network.parameters())


def test_convert_and_batch_one_shortcuts_do_not_change_the_count():
    network = build_preset('ESC-light', scale=4)
    before = profile_network(network, 4, (320, 180)).flops
    network.convert()  # bakes the kernel average (additions only)
    assert profile_network(network, 4, (320, 180)).flops == before


def test_cli_preset_yaml_weights_and_output_size(tmp_path, capsys, tiny_checkpoint):
    assert main(['profile', '--model', 'esc-light', '--scale', '4']) == 0
    out = capsys.readouterr().out
    assert 'FLOPs: 91.0 G for a 1280x720 output (320x180 input' in out and 'Params: 624,372' in out

    options = tmp_path / 'tiny.yml'
    write_yaml(options, {'scale': 3, 'network_g': dict(type='ESC', **TINY, upscaling_factor=3)})
    assert main(['profile', '--model', str(options), '--output-size', '96x48']) == 0
    out = capsys.readouterr().out
    expected = profile_network(build_preset('ESC', scale=3, **TINY), 3, (96, 48))
    assert out.splitlines()[0] == 'ESC x3' and f'FLOPs: {expected.flops / 1e9:.1f} G for a 96x48 output (32x16' in out

    checkpoint, network_yaml, network = tiny_checkpoint
    assert main(['profile', '--model', str(network_yaml), '--weights', str(checkpoint), '--output-size', '64x64']) == 0
    out = capsys.readouterr().out
    assert 'ESC x2' in out and f'Params: {sum(p.numel() for p in network.parameters()):,}' in out


def test_cli_other_registered_networks(tmp_path, capsys):
    swinir = dict(type='SwinIR', upscale=2, in_chans=3, img_size=16, window_size=8, img_range=1.0, depths=[2],
                  embed_dim=12, num_heads=[2], mlp_ratio=2, upsampler='pixelshuffledirect', resi_connection='1conv')
    options = tmp_path / 'swinir.yml'
    write_yaml(options, {'network_g': swinir})
    # 100x36 output at x4: input 25x9, padded to 32x16 for SwinIR's 8x8 windows
    assert main(['profile', '--model', str(options), '--scale', '4', '--output-size', '100x36']) == 0
    assert 'SwinIR x4' in capsys.readouterr().out


def test_cli_errors(capsys):
    assert main(['profile', '--model', 'ESC', '--output-size', '1280']) == 2
    assert 'basicsr profile: error: --output-size must be WIDTHxHEIGHT' in capsys.readouterr().err
    assert main(['profile', '--model', 'ESC', '--scale', '4', '--output-size', '3x3']) == 2
    assert 'smaller than the scale' in capsys.readouterr().err
    assert main(['profile', '--model', 'NoSuchNet']) == 2
    assert 'basicsr profile: error:' in capsys.readouterr().err


def test_arbitrary_scale_network_gets_a_query_per_output_pixel():
    esc_lte = pytest.importorskip('esc_arch.archs.esc_lte')
    network = esc_lte.ESCLTE(**TINY, hidden_dim=16, mlp_hidden=[16])
    encoder_only = profile_network(network.encoder, 2.5, (50, 30))
    profile = profile_network(network, 2.5, (50, 30))
    assert profile.input_size == (20, 12)
    queries = 50 * 30
    # each output pixel mixes four LR neighbours, each through the MLP 16 -> 16 -> 3
    assert profile.breakdown['matmul'] - encoder_only.breakdown['matmul'] >= 4 * queries * (16 * 16 + 16 * 3)
    assert torch.isfinite(torch.tensor(profile.flops))
