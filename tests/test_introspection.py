"""The one helper that sees through network wrappers and reads window and scale."""
import torch
from torch import nn

from esc_arch.archs import build_preset
from esc_arch.archs.introspection import bare_network, network_scale, network_window
from esc_arch.inference.compilation import CompiledNetwork


def test_reads_through_wrappers():
    network = build_preset('ESC-light', scale=3)
    for wrapped in (network, nn.DataParallel(network), torch.compile(network), CompiledNetwork(network)):
        assert bare_network(wrapped) is network
        assert network_window(wrapped) == 32
        assert network_scale(wrapped) == 3


def test_network_without_window_or_scale():
    plain = nn.Conv2d(3, 3, 1)
    assert network_window(plain) == 1
    assert network_scale(plain) is None


def test_window_of_a_network_that_keeps_it_on_its_layers():
    from basicsr.archs.swinir_arch import SwinIR

    swinir = SwinIR(upscale=2, img_size=16, window_size=8, depths=[1], embed_dim=12, num_heads=[2], mlp_ratio=2,
                    upsampler='pixelshuffledirect')
    assert not hasattr(swinir, 'window_size') and network_window(swinir) == 8
    assert network_scale(swinir) == 2
