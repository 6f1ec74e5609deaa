"""What the benchmarks run. Each builder returns a callable doing one unit of work.

Builders take only plain values (names, numbers, tuples), so that a child process can rebuild
the same workload from them (see :func:`benchmarks.measure.peak_memory`). Weights are random
(seeded): speed and memory do not depend on their values.
"""
import torch
import torch.nn.functional as F

import esc_arch  # noqa: F401  (registers the networks and makes basicsr importable; must come first)
from esc_arch.archs import build_preset
from esc_arch.archs.attention import WindowAttention
from esc_arch.archs.blocks import ConvAttn, ConvAttnBranch, ConvFFN, DecomposedConvAttn, LayerNorm2d, SharedKernel
from esc_arch.archs.layers import working_layout
from esc_arch.inference import tiled_forward
from esc_arch.inference.compilation import compile_network
from esc_arch.inference.window_padding import forward_padded_to_window

DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16}
# SwinIR-light as in the SwinIR paper and the ESC paper's Table 2, built from BasicSR's own SwinIR.
SWINIR_LIGHT = dict(img_size=64, window_size=8, img_range=1., depths=[6, 6, 6, 6], embed_dim=60,
                    num_heads=[6, 6, 6, 6], mlp_ratio=2, upsampler='pixelshuffledirect')
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


def forward(variant, scale, overrides, attn_type, dtype, device, lr_size, compile=False):
    """Inference on one ``lr_size`` (height, width) image; returns the output.

    With ``compile``, the network goes through :func:`esc_arch.inference.compilation.compile_network`
    (compiled at the first call; eager where compiling is unavailable, see ``run.compiled``).
    """
    network = build_network(variant, scale, overrides, attn_type, dtype, device)
    compiled = False
    if compile:
        network, compiled = compile_network(network)
    lr = torch.rand(1, 3, *lr_size, device=device, dtype=DTYPES[dtype])

    def run():
        with torch.inference_mode():
            return network(lr)

    run.network, run.compiled = network, compiled
    return run


def build_alternative(name, scale, device):
    """``ESC-light`` or BasicSR's ``SwinIR-light`` (the paper's configuration), fp32, in eval mode."""
    from basicsr.archs.swinir_arch import SwinIR

    if name == 'ESC-light':
        return build_network('ESC-light', scale, (), 'auto', 'fp32', device)
    torch.manual_seed(0)
    return PaddedToWindow(SwinIR(upscale=scale, **SWINIR_LIGHT), SWINIR_LIGHT['window_size'], scale).to(device).eval()


class PaddedToWindow(torch.nn.Module):
    """A network run as SwinIR's authors test it: input reflect-padded to multiples of its window, output cropped.

    BasicSR's SwinIR does not pad: it needs such inputs (720 / 4 = 180 is not a multiple of 8).
    """

    def __init__(self, network, window_size, scale):
        super().__init__()
        self.network, self.window_size, self.scale = network, window_size, scale

    def forward(self, lr):
        return forward_padded_to_window(self.network, lr, self.window_size, self.scale)


def alternative(name, scale, device, lr_size):
    """Inference of :func:`build_alternative`'s network on one ``lr_size`` image."""
    network = build_alternative(name, scale, device)
    lr = torch.rand(1, 3, *lr_size, device=device)

    def run():
        with torch.inference_mode():
            return network(lr)

    return run


def onnxruntime_forward(path, threads, lr_size, device='cpu'):
    """onnxruntime on one ``lr_size`` image with the exported network in ``path`` (``device``: ``cpu`` only)."""
    import numpy as np
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(path, options, providers=['CPUExecutionProvider'])
    lr = np.random.default_rng(0).random((1, 3, *lr_size), dtype=np.float32)

    def run():
        return session.run(None, {'input': lr})[0]

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
        call = lambda x: module(x, SharedKernel(large_kernel))  # noqa: E731
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
    """Inference on one ``lr_size`` image in tiles of ``tile_size`` LR pixels.

    Runs :func:`esc_arch.inference.tiled_forward`.
    """
    network = build_network(variant, scale, overrides, attn_type, dtype, device)
    lr = torch.rand(1, 3, *lr_size, device=device, dtype=DTYPES[dtype])

    def run():
        with torch.inference_mode():
            tiled_forward(network, lr, scale, tile_size, tile_pad)

    return run


BUILDERS = {'forward': forward, 'train_step': train_step, 'layer': layer, 'tiled': tiled, 'alternative': alternative,
            'onnxruntime': onnxruntime_forward}
