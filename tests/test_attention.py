"""Every attention backend against the naive one, and the blocks' fast CPU paths against their plain forms.

Small configurations, including images that are not multiples of the window (padded, then
cropped), one sample and several, channels-last (the CPU working layout) and NCHW.
"""
import pytest
import torch
import torch.nn.functional as F

from esc_arch.archs.attention import ATTN_TYPES, WindowAttention
from esc_arch.archs.blocks import ConvAttnBranch, ConvFFN, SharedKernel
from esc_arch.archs.layers import gelu_fresh, pointwise_conv

# (batch, dim, heads, window, height, width)
CONFIGS = [(1, 8, 2, 4, 8, 8), (2, 12, 3, 4, 7, 10), (1, 16, 2, 8, 5, 21), (3, 8, 1, 5, 11, 6)]
FAST_BACKENDS = [name for name in ATTN_TYPES if name not in ('naive', 'flex')]


def _attention(dim, heads, window, attn_type='naive'):
    torch.manual_seed(0)
    layer = WindowAttention(dim, window, heads, attn_type)
    with torch.no_grad():  # a bias far from zero, so that a wrong index shows
        layer.relative_position_bias.normal_(0, 1)
    return layer


def _inputs(batch, dim, height, width, channels_last):
    torch.manual_seed(1)
    x = torch.randn(batch, dim, height, width)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _outputs(layer, x, backends):
    outputs = {}
    for backend in backends:
        layer.attn_type = backend
        outputs[backend] = layer(x)
    return outputs


@pytest.mark.parametrize('channels_last', [True, False])
@pytest.mark.parametrize('config', CONFIGS)
def test_backends_equal_naive(config, channels_last):
    batch, dim, heads, window, height, width = config
    layer, x = _attention(dim, heads, window), _inputs(batch, dim, height, width, channels_last)
    with torch.no_grad():
        outputs = _outputs(layer, x, ['naive', *FAST_BACKENDS])
    assert outputs['naive'].shape == x.shape
    for backend in FAST_BACKENDS:
        assert (outputs[backend] - outputs['naive']).abs().max() < 1e-4, backend


@pytest.mark.slow
@pytest.mark.parametrize('config', CONFIGS[:2])
def test_flex_equals_naive(config):
    batch, dim, heads, window, height, width = config
    layer, x = _attention(dim, heads, window), _inputs(batch, dim, height, width, True)
    with torch.no_grad():
        outputs = _outputs(layer, x, ['naive', 'flex'])
    assert (outputs['flex'] - outputs['naive']).abs().max() < 1e-4


@pytest.mark.parametrize('config', CONFIGS[1:3])
def test_gradients_equal_naive(config):
    """Every parameter and the input get the naive backend's gradient (sdpa's backward is ours on CPU)."""
    batch, dim, heads, window, height, width = config
    layer = _attention(dim, heads, window)
    gradients = {}
    for backend in ['naive', *FAST_BACKENDS]:
        layer.attn_type = backend
        layer.zero_grad()
        x = _inputs(batch, dim, height, width, True).requires_grad_()
        (layer(x) * torch.linspace(0.5, 1.5, width)).sum().backward()
        gradients[backend] = {'input': x.grad, **{name: p.grad.clone() for name, p in layer.named_parameters()}}
    assert all(g is not None and g.abs().sum() > 0 for g in gradients['naive'].values())
    for backend in FAST_BACKENDS:
        for name, gradient in gradients[backend].items():
            assert torch.allclose(gradient, gradients['naive'][name], atol=1e-4, rtol=1e-4), (backend, name)


@pytest.mark.parametrize('config', CONFIGS)
def test_window_order_path_equals_image_path(config, monkeypatch):
    """A channels-last CPU input is cut into windows before the projections; NCHW is not: same outputs and gradients."""
    batch, dim, heads, window, height, width = config
    layer = _attention(dim, heads, window, 'sdpa')
    in_windows = []
    original = layer._attend_in_windows
    monkeypatch.setattr(layer, '_attend_in_windows', lambda x: in_windows.append(x.shape) or original(x))
    results = []
    for channels_last in (True, False):
        layer.zero_grad()
        x = _inputs(batch, dim, height, width, channels_last).requires_grad_()
        out = layer(x)
        (out * torch.linspace(0.5, 1.5, width)).sum().backward()
        results.append([out.detach(), x.grad, *(p.grad.clone() for p in layer.parameters())])
    assert len(in_windows) == 1  # the channels-last call only
    for windowed, image in zip(*results):
        assert torch.allclose(windowed, image, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize('onednn', [True, False])
def test_pointwise_conv_equals_conv2d_on_channel_slices(onednn):
    """oneDNN's product (fp32, by default) and the matrix product (oneDNN switched off) on pixel-major inputs."""
    torch.manual_seed(0)
    x = torch.randn(2, 12, 5, 7).contiguous(memory_format=torch.channels_last)
    weight, bias = torch.randn(6, 8, 1, 1), torch.randn(6)
    with torch.backends.mkldnn.flags(enabled=onednn):
        for source in (x, x[:, :8], x[:, 4:]):  # pixel-major: one product over the pixels
            w = weight if source.shape[1] == 8 else torch.randn(6, 12, 1, 1)
            out = pointwise_conv(source, w, bias)
            assert out.is_contiguous(memory_format=torch.channels_last)
            assert torch.allclose(out, F.conv2d(source.contiguous(), w, bias), atol=1e-5)
    out = pointwise_conv(x.bfloat16(), torch.randn(6, 12, 1, 1).bfloat16())
    assert out.dtype == torch.bfloat16 and out.shape == (2, 6, 5, 7)


def test_gelu_fresh_in_place_only_without_autograd():
    x = torch.randn(4, 5)
    expected = F.gelu(x)
    fresh = x.clone()
    with torch.no_grad():
        assert gelu_fresh(fresh) is fresh and torch.equal(fresh, expected)  # overwritten: no new tensor
    leaf = x.clone().requires_grad_()
    kept = leaf * 1
    out = gelu_fresh(kept)
    assert out is not kept and torch.equal(out, expected)
    out.sum().backward()  # GELU's backward still had its input
    assert leaf.grad is not None


@pytest.mark.parametrize('channels_last', [True, False])
@pytest.mark.parametrize('batch', [1, 2])
def test_conv_blocks_fast_paths_equal_plain_forms(batch, channels_last):
    """ConvFFN (in-place GELU) and ConvAttnBranch (aggr split in two products) as written in the paper's terms."""
    torch.manual_seed(0)
    dim, pdim = 12, 4
    ffn, branch = ConvFFN(dim, 3, 1.5), ConvAttnBranch(dim, pdim)
    for p in branch.parameters():
        p.data.normal_(0, 0.2)  # the dynamic-kernel MLP is zero-initialised: make it act
    kernel = SharedKernel(torch.randn(pdim, pdim, 5, 5) * 0.1)
    x = _inputs(batch, dim, 9, 7, channels_last)

    def ffn_plain(x):
        hidden = F.gelu(ffn.proj(x))
        return ffn.aggr(F.gelu(ffn.dwc(hidden)) + hidden)

    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            assert torch.allclose(ffn(x), ffn_plain(x), atol=1e-6)
            assert torch.allclose(branch(x, kernel), branch.aggr(branch.plk(x, kernel)), atol=1e-5)
    leaf = x.clone().requires_grad_()
    branch(leaf, kernel).sum().backward()
    assert all(p.grad is not None for p in branch.parameters()) and leaf.grad is not None
