"""What the benchmarks run. Each builder returns a callable doing one unit of work.

Builders take only plain values (names, numbers, tuples), so that a child process can rebuild
the same workload from them (see :func:`benchmarks.measure.peak_memory`). Weights are random
(seeded): speed and memory do not depend on their values.
"""
import esc_arch  # noqa: F401  (registers the networks and makes basicsr importable; must come first)
import torch
import torch.nn.functional as F
from esc_arch.archs import build_preset
from esc_arch.archs.attention import WindowAttention
from esc_arch.archs.blocks import ConvAttn, ConvAttnBranch, ConvFFN, DecomposedConvAttn, LayerNorm2d
from esc_arch.archs.layers import working_layout
from esc_arch.tiling import tiled_forward

DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16}
# The parts of a network that the time breakdown reports (see benchmarks.measure.time_by_module).
MODULE_GROUPS = {
    'window attention (qkv and output projections included)': WindowAttention,
    'ConvAttn (dynamic kernels and the shared large kernel)': (ConvAttn, DecomposedConvAttn),
    'ConvFFN': ConvFFN,
    'LayerNorm': LayerNorm2d,
}


def build_network(variant, scale, overrides, attn_type, dtype, device):
    """A published variant (``overrides`` replace hyperparameters) in eval mode on ``device``."""
    torch.manual_seed(0)
    network = build_preset(variant, scale, attn_type=attn_type, **dict(overrides))
    return network.to(device=device, dtype=DTYPES[dtype]).eval()


def forward(variant, scale, overrides, attn_type, dtype, device, lr_size):
    """Inference on one ``lr_size`` (height, width) image."""
    network = build_network(variant, scale, overrides, attn_type, dtype, device)
    lr = torch.rand(1, 3, *lr_size, device=device, dtype=DTYPES[dtype])

    def run():
        with torch.inference_mode():
            network(lr)

    return run


def train_step(variant, scale, overrides, attn_type, dtype, device, batch, patch):
    """One training step: L1 loss on ``batch`` LR patches of ``patch`` pixels, backward, Adam update."""
    network = build_network(variant, scale, overrides, attn_type, dtype, device).train()
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-4)
    lr = torch.rand(batch, 3, patch, patch, device=device, dtype=DTYPES[dtype])
    hr = torch.rand(batch, 3, patch * scale, patch * scale, device=device, dtype=DTYPES[dtype])

    def run():
        optimizer.zero_grad(set_to_none=True)
        F.l1_loss(network(lr), hr).backward()
        optimizer.step()

    return run


def layer(kind, attn_type, dtype, device, size, dim=64, pdim=16, kernel_size=13, window_size=32, num_heads=4,
          backward=False):
    """One layer on a ``(1, dim, *size)`` feature map, forward only or forward and backward.

    ``kind`` is ``convattn`` (ConvAttn on ``pdim`` channels with a ``kernel_size`` shared kernel,
    then its 1x1 convolution over all channels) or ``window`` (window self-attention with its
    qkv and output projections, backend ``attn_type``).
    """
    torch.manual_seed(0)
    if kind == 'convattn':
        module = ConvAttnBranch(dim, pdim)
        large_kernel = torch.randn(pdim, pdim, kernel_size, kernel_size, device=device, dtype=DTYPES[dtype]) * 0.01
        large_kernel.requires_grad_(backward)
        call = lambda x: module(x, large_kernel)  # noqa: E731
    else:
        module = WindowAttention(dim, window_size, num_heads, attn_type)
        call = module
    module.to(device=device, dtype=DTYPES[dtype]).train(backward)
    x = working_layout(torch.rand(1, dim, *size, device=device, dtype=DTYPES[dtype]))

    def run():
        if backward:
            call(x.requires_grad_()).sum().backward()
        else:
            with torch.inference_mode():
                call(x)

    return run


def tiled(variant, scale, overrides, attn_type, dtype, device, lr_size, tile_size, tile_pad):
    """Inference on one ``lr_size`` image in tiles of ``tile_size`` LR pixels (:func:`esc_arch.tiling.tiled_forward`)."""
    network = build_network(variant, scale, overrides, attn_type, dtype, device)
    lr = torch.rand(1, 3, *lr_size, device=device, dtype=DTYPES[dtype])

    def run():
        with torch.inference_mode():
            tiled_forward(network, lr, scale, tile_size, tile_pad)

    return run


BUILDERS = {'forward': forward, 'train_step': train_step, 'layer': layer, 'tiled': tiled}
