"""Layout and convolution helpers shared by the blocks and the networks, and the ONNX export switch."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


def require(condition: bool, name: str, message: str) -> None:
    """Raise ``ValueError('NAME MESSAGE')`` unless ``condition``: the argument check of every ESC module."""
    if not condition:
        raise ValueError(f'{name} {message}')


def require_positive_int(name: str, value: object) -> None:
    """Check that ``value`` (the argument ``name``) is an integer >= 1."""
    require(isinstance(value, int) and value >= 1, name, f'must be a positive integer; got {value!r}')


class ExportPath:
    """Mixin of the modules that compute differently when traced for ONNX export.

    Their ``export_mode`` flag (False by default) is set on the whole network at once by
    :func:`set_export_mode`. The export path computes the same function with operations that ONNX
    can express with dynamic batch, height and width; the other path is the faster one for PyTorch.
    """

    export_mode: bool = False


def set_export_mode(network: nn.Module, enabled: bool = True) -> nn.Module:
    """Switch every :class:`ExportPath` submodule of ``network`` to its export path (or back). Returns ``network``."""
    for module in network.modules():
        if isinstance(module, ExportPath):
            module.export_mode = enabled
    return network


def working_layout(x: Tensor) -> Tensor:
    """``x`` in the memory layout the networks compute in: channels-last on CPU, NCHW elsewhere.

    On CPU, oneDNN runs the depthwise and large-kernel convolutions several times faster on
    channels-last tensors, 1x1 convolutions become one matrix product (:class:`PointwiseConv2d`)
    and the layer norms normalise a contiguous axis. The layout carries through every layer from
    the input. Other devices keep the default layout.
    """
    return x.contiguous(memory_format=torch.channels_last) if x.device.type == 'cpu' else x


def mirror_pad(x: Tensor, pad: tuple[int, int, int, int], any_size: bool = False) -> Tensor:
    """Reflect-pad the last two axes of ``x`` by ``pad = (left, right, top, bottom)``, for any amount.

    Where every pad is smaller than its side this is ``F.pad(mode='reflect')``; beyond that the
    reflection keeps bouncing off both edges (a side of one pixel is repeated), so inputs
    smaller than the padding work too. ``any_size`` takes the second, general path whatever the
    size: an ONNX trace records only the path taken for the traced size.
    """
    if not any(pad):
        return x
    left, right, top, bottom = pad
    h, w = x.shape[-2:]
    if max(top, bottom) < h and max(left, right) < w and not any_size:
        return F.pad(x, pad, mode='reflect')
    rows = _mirror_indices(h, top, bottom, x.device)
    cols = _mirror_indices(w, left, right, x.device)
    return x[..., rows, :][..., cols]


def _mirror_indices(size: int, before: int, after: int, device: torch.device) -> Tensor:
    index = torch.arange(-before, size + after, device=device)
    period = 2 * (size - 1) + (size == 1)  # max(2 (size - 1), 1) without a branch: a 1-pixel side repeats
    index = index % period
    return torch.where(index < size, index, period - index)


class MirrorPaddedConv2d(ExportPath, nn.Conv2d):
    """Conv2d with reflect padding that also works when the padding exceeds the image (mirrored again)."""

    def forward(self, x: Tensor) -> Tensor:
        pad_h, pad_w = self.padding
        padded = mirror_pad(x, (pad_w, pad_w, pad_h, pad_h), any_size=self.export_mode)
        return F.conv2d(padded, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class PointwiseConv2d(nn.Conv2d):
    """1x1 convolution (parameters and state dict of ``nn.Conv2d(in, out, 1)``), see :func:`pointwise_conv`."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return pointwise_conv(x, self.weight, self.bias)


def is_pixel_major(x: Tensor) -> bool:
    """Whether ``x`` is a CPU tensor whose channels are its innermost axis (channels-last, or a channel slice of one).

    On such a tensor a 1x1 convolution is one matrix product over the pixels (:func:`pointwise_conv`).
    """
    return x.device.type == 'cpu' and x.stride(1) == 1


def _onednn_enabled() -> bool:
    """Whether torch was built with oneDNN and the user left it on (``torch.backends.mkldnn.enabled``)."""
    return torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled


def pointwise_conv(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.conv2d(x, weight, bias)`` for a ``[out, in, 1, 1]`` weight.

    On a pixel-major tensor (:func:`is_pixel_major`) the result is channels-last and contiguous, and an
    fp32 product goes to oneDNN directly (``torch.mkldnn_convolution``): ``F.conv2d`` sends 1x1
    convolutions with one thread and a batch below 16 to its im2col fallback, and ``F.linear`` to MKL's
    GEMM, which on an AVX-512 EPYC (2 threads) ran at 106 G multiply-adds/s against oneDNN's 200 to 240
    and took 3.8 ms against 1.3 ms for ESC's 64->80 projection at 1280x720 output. Under
    ``torch.compile`` the plain convolution is recorded (inductor picks its own kernel), and in an ONNX
    trace the matrix product; with oneDNN switched off (``torch.backends.mkldnn.flags(enabled=False)``),
    the matrix product too.
    """
    if is_pixel_major(x):
        if torch.compiler.is_compiling():
            return F.conv2d(x, weight, bias)
        if x.dtype == torch.float32 and _onednn_enabled() and not torch.jit.is_tracing():
            return torch.mkldnn_convolution(x, weight, bias, (0, 0), (1, 1), (1, 1), 1)
        return F.linear(x.permute(0, 2, 3, 1), weight.flatten(1), bias).permute(0, 3, 1, 2)
    return F.conv2d(x, weight, bias)


def gelu_fresh(x: Tensor) -> Tensor:
    """``F.gelu(x)`` for an ``x`` that nothing else uses: computed in place where autograd allows.

    Writing over ``x`` touches no new memory, which on CPU makes GELU about twice as fast (a fresh
    output is first-touched page by page). With a gradient to compute GELU's backward pass needs
    its input, and an ONNX trace records the plain operator: both take ``F.gelu``.
    """
    if (torch.is_grad_enabled() and x.requires_grad) or torch.jit.is_tracing():
        return F.gelu(x)
    return torch.ops.aten.gelu_(x)
