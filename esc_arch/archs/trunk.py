"""The feature trunk every ESC network is built on: stem convolution, ESC blocks, last convolution.

:class:`TrunkBase` holds what ESC, ESC-FP and ESC-Real share: the hyperparameters and their checks,
the attention-backend switch, the ONNX export switch and the layers ``proj`` (3x3 conv 3->dim),
``blocks`` and ``last``. A subclass supplies the network-wide ConvAttn kernel. :class:`ESCTrunk`
is the one with ESC's dense kernel ``plk_filter``; ESC and ESC-Real subclass it (ESC-FP subclasses
:class:`TrunkBase` with its decomposed kernel) so that their state dict keys stay flat (``proj.weight``,
as in the authors' checkpoints), and it serves on its own as ESCLTE's feature encoder.
"""
import torch
import torch.nn as nn
from torch import Tensor

from .attention import WindowAttention, normalize_attn_type, resolve_attn_type
from .blocks import Block, LayerNorm2d, SharedKernel
from .config import ConfigMixin, records_config
from .layers import require, require_positive_int, set_export_mode, working_layout

__all__ = ['ESCTrunk', 'TrunkBase', 'dihedral_mean', 'require', 'require_positive_int']


def dihedral_mean(kernel: Tensor) -> Tensor:
    """Mean of the 8 rotations and flips of a ``[..., k, k]`` kernel (geometric re-parameterisation)."""
    rotated = torch.rot90(kernel, -1, dims=[2, 3])
    variants = []
    for k in (kernel, rotated):
        variants += [k, k.flip(3), k.flip(2), k.flip(2, 3)]
    return torch.stack(variants).mean(0)


class TrunkBase(ConfigMixin, nn.Module):
    """``proj``, ``blocks`` and ``last`` of an ESC network, around a shared kernel a subclass provides.

    :meth:`features` computes ``last(norm(blocks(proj(x)))) + proj(x)`` at the input resolution,
    where ``norm`` is the LayerNorm ``ln_last`` when ``norm_before_last`` (ESC-FP) and nothing
    otherwise. Subclasses create their kernel parameters in :meth:`init_shared_kernel` (called
    before the layers, so that parameters come in the order of the authors' checkpoints) and
    implement :meth:`shared_kernel`.

    Every argument is keyword-only. A network built on it records its own constructor's options as
    ``config`` (:func:`~esc_arch.archs.config.records_config`).

    Args:
        dim (int): Feature channels.
        pdim (int): Channels ConvAttn acts on (4 <= pdim <= dim).
        kernel_size (int): Side of the shared large kernel (odd, >= 3).
        n_blocks (int): Number of blocks.
        conv_blocks (int): ConvAttn layers per block (>= 0).
        window_size (int): Side of the self-attention windows.
        num_heads (int): Attention heads (must divide dim).
        exp_ratio (float): Expansion of the ConvFFNs beside ConvAttn.
        attn_type (str): Attention backend: ``auto``, ``naive``, ``sdpa`` or ``flex``.
        use_ln (bool): LayerNorm before those ConvFFNs.
        proj_exp_ratio (float): Expansion of each block's first ConvFFN. Default: 2.
        decomposed (bool): ESC-FP's decomposed ConvAttn in the blocks. Default: False.
        norm_before_last (bool): A LayerNorm ``ln_last`` before ``last`` (ESC-FP). Default: False.
    """

    def __init__(self, *, dim: int, pdim: int, kernel_size: int, n_blocks: int, conv_blocks: int, window_size: int,
                 num_heads: int, exp_ratio: float, attn_type: str, use_ln: bool, proj_exp_ratio: float = 2.0,
                 decomposed: bool = False, norm_before_last: bool = False) -> None:
        super().__init__()
        for name, value in (('dim', dim), ('pdim', pdim), ('kernel_size', kernel_size), ('n_blocks', n_blocks),
                            ('window_size', window_size), ('num_heads', num_heads)):
            require_positive_int(name, value)
        require(isinstance(conv_blocks, int) and conv_blocks >= 0, 'conv_blocks',
                f'must be a non-negative integer; got {conv_blocks!r}')
        require(pdim <= dim, 'pdim', f'({pdim}) must not exceed dim ({dim})')
        require(pdim >= 4, 'pdim', f'({pdim}) must be at least 4 (the dynamic-kernel MLP narrows it by 4)')
        # dim % num_heads is checked by WindowAttention
        require(kernel_size % 2 == 1 and kernel_size >= 3, 'kernel_size', f'must be odd and >= 3; got {kernel_size}')
        require(exp_ratio > 0, 'exp_ratio', f'must be positive; got {exp_ratio!r}')
        self.dim, self.pdim, self.kernel_size = dim, pdim, kernel_size
        self.n_blocks, self.conv_blocks = n_blocks, conv_blocks
        self.window_size, self.num_heads = window_size, num_heads
        self.exp_ratio, self.use_ln = exp_ratio, use_ln
        self._attn_type = normalize_attn_type(attn_type)
        self.init_shared_kernel()
        self.proj = nn.Conv2d(3, dim, 3, padding=1)
        self.blocks = nn.ModuleList([
            Block(dim=dim, pdim=pdim, conv_blocks=conv_blocks, window_size=window_size, num_heads=num_heads,
                  exp_ratio=exp_ratio, attn_type=self._attn_type, use_ln=use_ln, proj_exp_ratio=proj_exp_ratio,
                  decomposed=decomposed) for _ in range(n_blocks)
        ])
        self.ln_last = LayerNorm2d(dim) if norm_before_last else None
        self.last = nn.Conv2d(dim, dim, 3, padding=1)

    def init_shared_kernel(self) -> None:
        """Create the parameters of the network-wide ConvAttn kernel (hyperparameters are set already)."""
        raise NotImplementedError

    def shared_kernel(self) -> SharedKernel:
        """The ConvAttn kernel of this forward pass, passed to every block."""
        raise NotImplementedError

    def convert(self) -> 'TrunkBase':
        """Bake any re-parameterisation into the weights for deployment; returns self (nothing to do here)."""
        return self

    def features(self, x: Tensor) -> Tensor:
        """``(N, dim, H, W)`` features of a ``(N, 3, H, W)`` image (in the working layout, see ``working_layout``)."""
        stem = self.proj(x)
        feat = stem
        kernel = self.shared_kernel()
        for block in self.blocks:
            feat = block(feat, kernel)
        if self.ln_last is not None:
            feat = self.ln_last(feat)
        return self.last(feat) + stem

    def set_export_mode(self, enabled: bool = True) -> 'TrunkBase':
        """Switch every layer to the computation traced for ONNX export (see ``layers.ExportPath``); returns self."""
        return set_export_mode(self, enabled)

    @property
    def attn_type(self) -> str:
        """The attention backend of every window-attention layer; assign to switch it."""
        return self._attn_type

    @attn_type.setter
    def attn_type(self, value: str) -> None:
        self._attn_type = normalize_attn_type(value)
        for module in self.modules():
            if isinstance(module, WindowAttention):
                module.attn_type = self._attn_type

    def extra_repr(self) -> str:
        device = next(self.parameters()).device
        active = resolve_attn_type(self._attn_type, device)
        backend = self._attn_type if active == self._attn_type else f'{self._attn_type} ({active} on {device.type})'
        return (f'dim={self.dim}, pdim={self.pdim}, kernel_size={self.kernel_size}, n_blocks={self.n_blocks}, '
                f'conv_blocks={self.conv_blocks}, window_size={self.window_size}, num_heads={self.num_heads}, '
                f'exp_ratio={self.exp_ratio}, attn_type={backend}, use_ln={self.use_ln}')


class ESCTrunk(TrunkBase):
    """ESC's feature trunk: ``proj``, ``blocks`` and ``last`` around the shared kernel ``plk_filter``.

    Its state dict keys are exactly ESC's less ``to_img``: ``proj.*``, ``plk_filter``, ``blocks.*``
    and ``last.*``. :meth:`features` maps ``(N, 3, H, W)`` to ``(N, dim, H, W)``.

    The kernel ConvAttn uses is, at every forward, the mean of the 8 rotations and flips of
    ``plk_filter`` (geometric re-parameterisation). The mean is a projection, so baking it in with
    :meth:`convert` changes no output, and a converted state dict loads into an unconverted trunk
    unchanged.

    Args:
        dim (int): Feature channels. Default: 64.
        pdim (int): Channels ConvAttn acts on (4 <= pdim <= dim). Default: 16.
        kernel_size (int): Side of the shared large kernel (odd, >= 3). Default: 13.
        n_blocks (int): Number of blocks. Default: 5.
        conv_blocks (int): ConvAttn layers per block. Default: 5.
        window_size (int): Side of the self-attention windows. Default: 32.
        num_heads (int): Attention heads (must divide dim). Default: 4.
        exp_ratio (float): Expansion of the ConvFFNs beside ConvAttn. Default: 1.25.
        attn_type (str): Attention backend: ``auto``, ``naive``, ``sdpa`` or ``flex``. Default: ``auto``.
        use_ln (bool): LayerNorm before those ConvFFNs (ESC-XL, ESC-Real). Default: False.
    """

    @records_config
    def __init__(self, *, dim: int = 64, pdim: int = 16, kernel_size: int = 13, n_blocks: int = 5,
                 conv_blocks: int = 5, window_size: int = 32, num_heads: int = 4, exp_ratio: float = 1.25,
                 attn_type: str = 'auto', use_ln: bool = False) -> None:
        super().__init__(dim=dim, pdim=pdim, kernel_size=kernel_size, n_blocks=n_blocks, conv_blocks=conv_blocks,
                         window_size=window_size, num_heads=num_heads, exp_ratio=exp_ratio, attn_type=attn_type,
                         use_ln=use_ln)

    def init_shared_kernel(self) -> None:
        self.plk_filter = nn.Parameter(torch.empty(self.pdim, self.pdim, self.kernel_size, self.kernel_size))
        nn.init.orthogonal_(self.plk_filter)
        self.converted = False

    def shared_kernel(self) -> SharedKernel:
        """The dihedral mean of ``plk_filter`` (``plk_filter`` as stored after :meth:`convert`)."""
        return SharedKernel(self.plk_filter if self.converted else dihedral_mean(self.plk_filter))

    @torch.no_grad()
    def convert(self) -> 'ESCTrunk':
        """Bake the geometric re-parameterisation into ``plk_filter`` for deployment; returns self."""
        if not self.converted:
            self.plk_filter.copy_(dihedral_mean(self.plk_filter))
            self.converted = True
        return self

    def forward(self, x: Tensor) -> Tensor:
        """The trunk on its own: :meth:`features` of ``x`` in the working layout."""
        return self.features(working_layout(x))
