"""What the ESC networks share besides their blocks: argument checks, backend switch, repr, loading."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import WindowAttention, normalize_attn_type, resolve_attn_type
from .blocks import dihedral_mean


def _require(condition, name, message):
    if not condition:
        raise ValueError(f'{name} {message}')


class ESCBase(nn.Module):
    """Base of :class:`ESC`, :class:`ESCFP` and :class:`ESCReal`; stores and checks the hyperparameters."""

    def __init__(self, dim, pdim, kernel_size, n_blocks, conv_blocks, window_size, num_heads, upscaling_factor,
                 exp_ratio, attn_type):
        super().__init__()
        for name, value in (('dim', dim), ('pdim', pdim), ('kernel_size', kernel_size), ('n_blocks', n_blocks),
                            ('window_size', window_size), ('num_heads', num_heads),
                            ('upscaling_factor', upscaling_factor)):
            _require(isinstance(value, int) and value >= 1, name, f'must be a positive integer; got {value!r}')
        _require(isinstance(conv_blocks, int) and conv_blocks >= 0, 'conv_blocks',
                 f'must be a non-negative integer; got {conv_blocks!r}')
        _require(pdim <= dim, 'pdim', f'({pdim}) must not exceed dim ({dim})')
        _require(pdim >= 4, 'pdim', f'({pdim}) must be at least 4 (the dynamic-kernel MLP narrows it by 4)')
        _require(dim % num_heads == 0, 'dim', f'({dim}) must be divisible by num_heads ({num_heads})')
        _require(kernel_size % 2 == 1 and kernel_size >= 3, 'kernel_size', f'must be odd and >= 3; got {kernel_size}')
        _require(exp_ratio > 0, 'exp_ratio', f'must be positive; got {exp_ratio!r}')
        self.dim, self.pdim, self.kernel_size = dim, pdim, kernel_size
        self.n_blocks, self.conv_blocks = n_blocks, conv_blocks
        self.window_size, self.num_heads = window_size, num_heads
        self.upscaling_factor, self.exp_ratio = upscaling_factor, exp_ratio
        self._attn_type = normalize_attn_type(attn_type)

    @property
    def attn_type(self):
        """The attention backend of every window-attention layer; assign to switch it."""
        return self._attn_type

    @attn_type.setter
    def attn_type(self, value):
        self._attn_type = normalize_attn_type(value)
        for module in self.modules():
            if isinstance(module, WindowAttention):
                module.attn_type = self._attn_type

    def extra_repr(self):
        device = next(self.parameters()).device
        active = resolve_attn_type(self._attn_type, device)
        backend = self._attn_type if active == self._attn_type else f'{self._attn_type} ({active} on {device.type})'
        return (f'dim={self.dim}, pdim={self.pdim}, kernel_size={self.kernel_size}, n_blocks={self.n_blocks}, '
                f'conv_blocks={self.conv_blocks}, window_size={self.window_size}, num_heads={self.num_heads}, '
                f'upscaling_factor={self.upscaling_factor}, exp_ratio={self.exp_ratio}, attn_type={backend}')


def resample_pixel_shuffle_head(tensor, scale):
    """Resize a ``3*s_in*s_in``-output conv weight or bias (before pixel shuffle) to scale ``scale``.

    Its output channels, viewed as ``(3, s_in, s_in)``, are resized bilinearly (align_corners
    false) to ``(3, scale, scale)``.
    """
    s_in = math.isqrt(tensor.shape[0] // 3)
    rest = tensor.shape[1:]
    grid = tensor.reshape(3, s_in, s_in, -1).permute(0, 3, 1, 2).reshape(1, -1, s_in, s_in)
    grid = F.interpolate(grid.float(), size=(scale, scale), mode='bilinear', align_corners=False).to(tensor.dtype)
    return grid.reshape(3, -1, scale, scale).permute(0, 2, 3, 1).reshape(3 * scale * scale, *rest)


class PixelShuffleHeadMixin:
    """Loads ``to_img`` trained for another scale by resampling it (the paper's x2 -> x3/x4 start)."""

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        channels = 3 * self.upscaling_factor ** 2
        for name in ('weight', 'bias'):
            key = f'{prefix}to_img.{name}'
            stored = state_dict.get(key)
            if stored is None or stored.shape[0] == channels:
                continue
            s_in = math.isqrt(stored.shape[0] // 3)
            if 3 * s_in * s_in == stored.shape[0]:
                state_dict[key] = resample_pixel_shuffle_head(stored, self.upscaling_factor)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class SharedKernelMixin:
    """The network-wide ConvAttn kernel ``plk_filter`` with its geometric re-parameterisation.

    At every forward the kernel used is the mean of the 8 rotations and flips of ``plk_filter``.
    The mean is a projection, so baking it in with :meth:`convert` changes no output, and a
    converted state dict loads into an unconverted network unchanged.
    """

    def _init_shared_kernel(self):
        self.plk_filter = nn.Parameter(torch.empty(self.pdim, self.pdim, self.kernel_size, self.kernel_size))
        nn.init.orthogonal_(self.plk_filter)
        self.converted = False

    def large_kernel(self):
        """The kernel ConvAttn uses: the dihedral mean of ``plk_filter`` (stored as is after :meth:`convert`)."""
        return self.plk_filter if self.converted else dihedral_mean(self.plk_filter)

    @torch.no_grad()
    def convert(self):
        """Bake the geometric re-parameterisation into ``plk_filter`` for deployment; returns self."""
        if not self.converted:
            self.plk_filter.copy_(dihedral_mean(self.plk_filter))
            self.converted = True
        return self
