"""Building blocks shared by every ESC network.

All modules take and return NCHW tensors. The shared large kernel is owned by the network
and passed into each block at every forward, so the blocks hold no copy of it.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import WindowAttention
from .layers import PointwiseConv2d, pointwise_conv


class LayerNorm2d(nn.Module):
    """Layer normalisation over the channel axis of an NCHW tensor, at every pixel.

    Args:
        dim (int): Number of channels.
        eps (float): Added to the variance. Default: 1e-6.
    """

    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps
        self.normalized_shape = (dim,)  # a constant, as ONNX export needs (x.shape would be traced)

    def forward(self, x):
        if x.is_contiguous(memory_format=torch.channels_last):
            # Channels are the innermost axis here: one fused kernel, no copy.
            return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                                self.eps).permute(0, 3, 1, 2)
        mean = x.mean(1, keepdim=True)
        centred = x - mean
        var = centred.pow(2).mean(1, keepdim=True)
        x = centred * torch.rsqrt(var + self.eps)
        return x * self.weight[:, None, None] + self.bias[:, None, None]

    def extra_repr(self):
        return f'{self.weight.shape[0]}, eps={self.eps}'


class ConvFFN(nn.Module):
    """Feed-forward layer of 1x1 convolutions around a residual depthwise 3x3 convolution.

    Args:
        dim (int): Input and output channels.
        kernel_size (int): Size of the depthwise convolution. Default: 3.
        exp_ratio (float): Hidden channels are ``int(dim * exp_ratio)``. Default: 2.
    """

    def __init__(self, dim, kernel_size=3, exp_ratio=2.0):
        super().__init__()
        hidden = int(dim * exp_ratio)
        self.proj = PointwiseConv2d(dim, hidden)
        self.dwc = nn.Conv2d(hidden, hidden, kernel_size, padding=kernel_size // 2, groups=hidden)
        self.aggr = PointwiseConv2d(hidden, dim)

    def forward(self, x):
        x = F.gelu(self.proj(x))
        # In place on a fresh tensor (GELU's backward needs its input, not its output): no new allocation.
        return self.aggr(F.gelu(self.dwc(x)).add_(x))


def _dynamic_kernel_mlp(pdim, hidden):
    """Pooling MLP that predicts ``pdim`` depthwise 3x3 kernels per sample (zero-initialised output)."""
    mlp = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(pdim, hidden, 1), nn.GELU(), nn.Conv2d(hidden, pdim * 9, 1))
    nn.init.zeros_(mlp[-1].weight)
    nn.init.zeros_(mlp[-1].bias)
    return mlp


def _centred_diagonal(kernels, size):
    """The dense ``[C, C, size, size]`` kernel that applies the depthwise kernels ``[C, 3, 3]`` at its centre."""
    border = (size - 3) // 2
    return F.pad(torch.diag_embed(kernels.permute(1, 2, 0)).permute(2, 3, 0, 1), (border,) * 4)


def _per_sample_depthwise(x, kernels):
    """Depthwise convolution of each sample of ``x`` with its own kernels ``(N, C, k, k)``.

    The batch is folded into the channel axis so that a single grouped convolution serves
    every batch size. ONNX fixes a convolution's group count in the graph, so an ONNX export
    sums the k*k shifted, weighted copies of ``x`` instead, which keeps the batch dynamic.
    """
    n, c, h, w = x.shape
    k = kernels.shape[-1]
    if torch.onnx.is_in_onnx_export():
        padded = F.pad(x, (k // 2,) * 4)
        taps = [padded[:, :, i:i + h, j:j + w] * kernels[:, :, i, j, None, None] for i in range(k) for j in range(k)]
        return torch.stack(taps).sum(0)
    if n == 1:
        # Nothing to fold; folding would also turn channels-last strides into ones for which
        # oneDNN's depthwise convolution is about 20x slower on CPU.
        return F.conv2d(x, kernels.reshape(c, 1, k, k), padding=k // 2, groups=c)
    out = F.conv2d(x.reshape(1, n * c, h, w), kernels.reshape(n * c, 1, k, k), padding=k // 2, groups=n * c)
    return out.view(n, c, h, w)


class ConvAttn(nn.Module):
    """Convolutional stand-in for self-attention on the first ``pdim`` channels.

    ``x1' = conv(x1, large_kernel) + depthwise3x3(x1, dynamic kernels of that sample)``;
    the remaining channels pass through unchanged. The large kernel ``[pdim, pdim, k, k]``
    is shared by the whole network and passed to ``forward``.

    Args:
        pdim (int): Channels the layer acts on (the first ``pdim`` of its input).
    """

    def __init__(self, pdim):
        super().__init__()
        self.pdim = pdim
        self.dwc_proj = _dynamic_kernel_mlp(pdim, pdim // 2)

    def forward(self, x, large_kernel):
        x1, x2 = torch.split(x, [self.pdim, x.shape[1] - self.pdim], dim=1)
        dynamic = self.dwc_proj(x1).view(x.shape[0], self.pdim, 3, 3)
        k = large_kernel.shape[-1]
        if x.shape[0] == 1 and not torch.onnx.is_in_onnx_export():  # an export must keep the batch dynamic
            # Both convolutions are linear in the kernel: with one sample, its depthwise kernel
            # folds into the centre of the large one and a single convolution does the work.
            x1 = F.conv2d(x1, large_kernel + _centred_diagonal(dynamic[0], k), padding=k // 2)
        else:
            x1 = F.conv2d(x1, large_kernel, padding=k // 2) + _per_sample_depthwise(x1, dynamic)
        return torch.cat([x1, x2], dim=1)

    def extra_repr(self):
        return f'pdim={self.pdim}'


class DecomposedConvAttn(nn.Module):
    """ConvAttn of ESC-FP: a shared 1x1 channel mix, then one depthwise k x k convolution.

    The depthwise kernel is the shared spatial kernel plus this sample's dynamic 3x3 kernel,
    zero-padded to k x k at the centre.

    Args:
        pdim (int): Channels the layer acts on (the first ``pdim`` of its input).
    """

    def __init__(self, pdim):
        super().__init__()
        self.pdim = pdim
        self.proj = _dynamic_kernel_mlp(pdim, pdim // 4)

    def forward(self, x, large_kernel):
        lk_channel, lk_spatial = large_kernel
        x1, x2 = torch.split(x, [self.pdim, x.shape[1] - self.pdim], dim=1)
        k = lk_spatial.shape[-1]
        dynamic = self.proj(x1).view(x.shape[0], self.pdim, 3, 3)
        mixed = pointwise_conv(x1, lk_channel)
        if torch.onnx.is_in_onnx_export():
            # Same sum split by linearity, so that only a 3x3 convolution is per-sample.
            x1 = F.conv2d(mixed, lk_spatial, padding=k // 2, groups=self.pdim) + _per_sample_depthwise(mixed, dynamic)
        else:
            border = (k - 3) // 2
            x1 = _per_sample_depthwise(mixed, lk_spatial.view(1, self.pdim, k, k) + F.pad(dynamic, (border,) * 4))
        return torch.cat([x1, x2], dim=1)

    def extra_repr(self):
        return f'pdim={self.pdim}'


class ConvAttnBranch(nn.Module):
    """A ConvAttn layer (``plk``) followed by a 1x1 convolution over all channels (``aggr``).

    Args:
        dim (int): Channels of the input.
        pdim (int): Channels ConvAttn acts on.
        decomposed (bool): Use ESC-FP's decomposed ConvAttn. Default: False.
    """

    def __init__(self, dim, pdim, decomposed=False):
        super().__init__()
        self.plk = DecomposedConvAttn(pdim) if decomposed else ConvAttn(pdim)
        self.aggr = PointwiseConv2d(dim, dim)

    def forward(self, x, large_kernel):
        return self.aggr(self.plk(x, large_kernel))


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

    def __init__(self, dim, pdim, conv_blocks, window_size, num_heads, exp_ratio, attn_type, use_ln,
                 proj_exp_ratio=2.0, decomposed=False):
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

    def forward(self, x, large_kernel):
        skip = x
        x = self.proj(self.ln_proj(x))
        x = x + self.attn(self.ln_attn(x))
        for ln, convffn, pconv in zip(self.lns, self.convffns, self.pconvs):
            # The branch's output is fresh and its last layer's backward does not need it: add in place.
            x = pconv(convffn(ln(x)), large_kernel).add_(x)
        return self.conv_out(self.ln_out(x)).add_(skip)


def dihedral_mean(kernel):
    """Mean of the 8 rotations and flips of a ``[..., k, k]`` kernel (geometric re-parameterisation)."""
    rotated = torch.rot90(kernel, -1, dims=[2, 3])
    variants = []
    for k in (kernel, rotated):
        variants += [k, k.flip(3), k.flip(2), k.flip(2, 3)]
    return torch.stack(variants).mean(0)
