"""Building blocks shared by every ESC network.

All modules take and return NCHW tensors. The shared large kernel is owned by the network
and passed into each block at every forward, so the blocks hold no copy of it.
"""
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .attention import WindowAttention
from .layers import ExportPath, PointwiseConv2d, gelu_fresh, is_pixel_major, pointwise_conv


class LayerNorm2d(nn.Module):
    """Layer normalisation over the channel axis of an NCHW tensor, at every pixel.

    Args:
        dim (int): Number of channels.
        eps (float): Added to the variance. Default: 1e-6.
    """

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps
        self.normalized_shape = (dim,)  # a constant, as ONNX export needs (x.shape would be traced)

    def forward(self, x: Tensor) -> Tensor:
        if x.is_contiguous(memory_format=torch.channels_last):
            # Channels are the innermost axis here: one fused kernel, no copy.
            return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                                self.eps).permute(0, 3, 1, 2)
        mean = x.mean(1, keepdim=True)
        centred = x - mean
        var = centred.pow(2).mean(1, keepdim=True)
        x = centred * torch.rsqrt(var + self.eps)
        return x * self.weight[:, None, None] + self.bias[:, None, None]

    def extra_repr(self) -> str:
        return f'{self.weight.shape[0]}, eps={self.eps}'


class ConvFFN(nn.Module):
    """Feed-forward layer of 1x1 convolutions around a residual depthwise 3x3 convolution.

    Args:
        dim (int): Input and output channels.
        kernel_size (int): Size of the depthwise convolution. Default: 3.
        exp_ratio (float): Hidden channels are ``int(dim * exp_ratio)``. Default: 2.
    """

    def __init__(self, dim: int, kernel_size: int = 3, exp_ratio: float = 2.0) -> None:
        super().__init__()
        hidden = int(dim * exp_ratio)
        self.proj = PointwiseConv2d(dim, hidden)
        self.dwc = nn.Conv2d(hidden, hidden, kernel_size, padding=kernel_size // 2, groups=hidden)
        self.aggr = PointwiseConv2d(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        x = gelu_fresh(self.proj(x))
        # In place on a fresh tensor (GELU's backward needs its input, not its output): no new allocation.
        return self.aggr(gelu_fresh(self.dwc(x)).add_(x))


class SharedKernel(NamedTuple):
    """The network-wide ConvAttn kernel, passed from the network to every block at each forward.

    Attributes:
        spatial (Tensor): ESC and ESC-Real: the dense ``[pdim, pdim, k, k]`` kernel; ESC-FP: the
            depthwise ``[pdim, 1, k, k]`` kernel.
        channel_mix (Tensor | None): ESC-FP only: the ``[pdim, pdim, 1, 1]`` channel mix applied
            before ``spatial``. None for a dense kernel.
    """

    spatial: Tensor
    channel_mix: Tensor | None = None


def _dynamic_kernel_mlp(pdim: int, hidden: int) -> nn.Sequential:
    """Pooling MLP that predicts ``pdim`` depthwise 3x3 kernels per sample (zero-initialised output)."""
    mlp = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(pdim, hidden, 1), nn.GELU(), nn.Conv2d(hidden, pdim * 9, 1))
    nn.init.zeros_(mlp[-1].weight)
    nn.init.zeros_(mlp[-1].bias)
    return mlp


def _centred_diagonal(kernels: Tensor, size: int) -> Tensor:
    """The dense ``[C, C, size, size]`` kernel that applies the depthwise kernels ``[C, 3, 3]`` at its centre."""
    border = (size - 3) // 2
    return F.pad(torch.diag_embed(kernels.permute(1, 2, 0)).permute(2, 3, 0, 1), (border,) * 4)


def _per_sample_depthwise(x: Tensor, kernels: Tensor, as_taps: bool = False) -> Tensor:
    """Depthwise convolution of each sample of ``x`` with its own kernels ``(N, C, k, k)``.

    The batch is folded into the channel axis so that a single grouped convolution serves
    every batch size. ONNX fixes a convolution's group count in the graph, so for an export
    (``as_taps``) the k*k shifted, weighted copies of ``x`` are summed instead, which keeps the
    batch dynamic.
    """
    n, c, h, w = x.shape
    k = kernels.shape[-1]
    if as_taps:
        padded = F.pad(x, (k // 2,) * 4)
        taps = [padded[:, :, i:i + h, j:j + w] * kernels[:, :, i, j, None, None] for i in range(k) for j in range(k)]
        return torch.stack(taps).sum(0)
    if n == 1:
        # Nothing to fold; folding would also turn channels-last strides into ones for which
        # oneDNN's depthwise convolution is about 20x slower on CPU.
        return F.conv2d(x, kernels.reshape(c, 1, k, k), padding=k // 2, groups=c)
    out = F.conv2d(x.reshape(1, n * c, h, w), kernels.reshape(n * c, 1, k, k), padding=k // 2, groups=n * c)
    return out.view(n, c, h, w)


class ConvAttn(ExportPath, nn.Module):
    """Convolutional stand-in for self-attention on the first ``pdim`` channels.

    ``x1' = conv(x1, large_kernel) + depthwise3x3(x1, dynamic kernels of that sample)``;
    the remaining channels pass through unchanged. The large kernel ``[pdim, pdim, k, k]``
    is shared by the whole network and passed to ``forward`` as ``SharedKernel(spatial)``.

    Args:
        pdim (int): Channels the layer acts on (the first ``pdim`` of its input).
    """

    # Name and narrowing of the dynamic-kernel MLP, as in the authors' checkpoints.
    _mlp_name, _mlp_narrowing = 'dwc_proj', 2

    def __init__(self, pdim: int) -> None:
        super().__init__()
        self.pdim = pdim
        self.add_module(self._mlp_name, _dynamic_kernel_mlp(pdim, pdim // self._mlp_narrowing))

    def forward(self, x: Tensor, kernel: SharedKernel) -> Tensor:
        return torch.cat([self.convolved_channels(x, kernel), x[:, self.pdim:]], dim=1)

    def convolved_channels(self, x: Tensor, kernel: SharedKernel) -> Tensor:
        """The first ``pdim`` channels of the output: the ones the layer changes."""
        x1 = x[:, :self.pdim]
        dynamic = getattr(self, self._mlp_name)(x1).view(x.shape[0], self.pdim, 3, 3)
        return self._convolve(x1, dynamic, kernel)

    def _convolve(self, x1: Tensor, dynamic: Tensor, kernel: SharedKernel) -> Tensor:
        large = kernel.spatial
        k = large.shape[-1]
        if x1.shape[0] == 1 and not self.export_mode:  # an export must keep the batch dynamic
            # Both convolutions are linear in the kernel: with one sample, its depthwise kernel
            # folds into the centre of the large one and a single convolution does the work.
            return F.conv2d(x1, large + _centred_diagonal(dynamic[0], k), padding=k // 2)
        return F.conv2d(x1, large, padding=k // 2) + _per_sample_depthwise(x1, dynamic, as_taps=self.export_mode)

    def extra_repr(self) -> str:
        return f'pdim={self.pdim}'


class DecomposedConvAttn(ConvAttn):
    """ConvAttn of ESC-FP: a shared 1x1 channel mix, then one depthwise k x k convolution.

    The depthwise kernel is the shared spatial kernel plus this sample's dynamic 3x3 kernel,
    zero-padded to k x k at the centre. The kernel comes as ``SharedKernel(spatial, channel_mix)``.

    Args:
        pdim (int): Channels the layer acts on (the first ``pdim`` of its input).
    """

    _mlp_name, _mlp_narrowing = 'proj', 4

    def _convolve(self, x1: Tensor, dynamic: Tensor, kernel: SharedKernel) -> Tensor:
        spatial = kernel.spatial
        k = spatial.shape[-1]
        mixed = pointwise_conv(x1, kernel.channel_mix)
        if self.export_mode:
            # Same sum split by linearity, so that only a 3x3 convolution is per-sample.
            return (F.conv2d(mixed, spatial, padding=k // 2, groups=self.pdim)
                    + _per_sample_depthwise(mixed, dynamic, as_taps=True))
        border = (k - 3) // 2
        return _per_sample_depthwise(mixed, spatial.view(1, self.pdim, k, k) + F.pad(dynamic, (border,) * 4))


class ConvAttnBranch(nn.Module):
    """A ConvAttn layer (``plk``) followed by a 1x1 convolution over all channels (``aggr``).

    Args:
        dim (int): Channels of the input.
        pdim (int): Channels ConvAttn acts on.
        decomposed (bool): Use ESC-FP's decomposed ConvAttn. Default: False.
    """

    def __init__(self, dim: int, pdim: int, decomposed: bool = False) -> None:
        super().__init__()
        self.plk = DecomposedConvAttn(pdim) if decomposed else ConvAttn(pdim)
        self.aggr = PointwiseConv2d(dim, dim)

    def forward(self, x: Tensor, kernel: SharedKernel) -> Tensor:
        if self.plk.export_mode or not is_pixel_major(x) or torch.is_grad_enabled():
            return self.aggr(self.plk(x, kernel))
        # aggr(cat(new, x2)) = aggr_x2(x2) + aggr_new(new): two matrix products, the second one
        # accumulating into the first, instead of concatenating a copy of all the channels. Only
        # without autograd: in a training step (batch 4, LR 64x64) its backward pass, one product
        # per weight slice, took a few percent longer than the concatenation saved.
        pdim, weight = self.plk.pdim, self.aggr.weight.flatten(1)
        out = pointwise_conv(x[:, pdim:], weight[:, pdim:, None, None], self.aggr.bias)
        new = self.plk.convolved_channels(x, kernel).permute(0, 2, 3, 1).reshape(-1, pdim)
        out.permute(0, 2, 3, 1).view(-1, out.shape[1]).addmm_(new, weight[:, :pdim].T)
        return out


class Block(nn.Module):
    """ESC block: ConvFFN, one window self-attention and ``conv_blocks`` ConvAttn branches.

    Args:
        dim (int): Channels.
        pdim (int): Channels ConvAttn acts on.
        conv_blocks (int): Number of ConvFFN + ConvAttn pairs.
        window_size (int): Side of the square attention windows.
        num_heads (int): Attention heads.
        exp_ratio (float): Expansion of the ConvFFNs inside the ConvAttn pairs.
        attn_type (str): Attention backend, see :class:`WindowAttention`.
        use_ln (bool): LayerNorm before each ConvFFN of the pairs (identity otherwise).
        proj_exp_ratio (float): Expansion of the first ConvFFN. Default: 2.
        decomposed (bool): Use ESC-FP's decomposed ConvAttn. Default: False.
    """

    def __init__(self, dim: int, pdim: int, conv_blocks: int, window_size: int, num_heads: int, exp_ratio: float,
                 attn_type: str, use_ln: bool, proj_exp_ratio: float = 2.0, decomposed: bool = False) -> None:
        super().__init__()
        self.ln_proj = LayerNorm2d(dim)
        self.proj = ConvFFN(dim, 3, proj_exp_ratio)
        self.ln_attn = LayerNorm2d(dim)
        self.attn = WindowAttention(dim, window_size, num_heads, attn_type)
        self.lns = nn.ModuleList([LayerNorm2d(dim) if use_ln else nn.Identity() for _ in range(conv_blocks)])
        self.convffns = nn.ModuleList([ConvFFN(dim, 3, exp_ratio) for _ in range(conv_blocks)])
        self.pconvs = nn.ModuleList([ConvAttnBranch(dim, pdim, decomposed) for _ in range(conv_blocks)])
        self.ln_out = LayerNorm2d(dim)
        self.conv_out = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x: Tensor, kernel: SharedKernel) -> Tensor:
        skip = x
        x = self.proj(self.ln_proj(x))
        x = x + self.attn(self.ln_attn(x))
        for ln, convffn, pconv in zip(self.lns, self.convffns, self.pconvs):
            # The branch's output is fresh and its last layer's backward does not need it: add in place.
            x = pconv(convffn(ln(x)), kernel).add_(x)
        return self.conv_out(self.ln_out(x)).add_(skip)

