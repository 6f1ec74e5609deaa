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
