"""Window self-attention with a relative position bias, behind interchangeable backends.

Backends (``attn_type``), all computing the same function:

* ``naive``: explicit ``softmax(q k^T / sqrt(d) + bias) v`` (what the authors' CPU path computes);
  it holds the scores of every window at once;
* ``sdpa``: :func:`torch.nn.functional.scaled_dot_product_attention` with the bias as a float mask,
  letting torch pick the kernel (flash attention on CPU, fused kernels on GPU). torch's CPU kernel
  gives no gradient for a mask, so when the bias needs one on CPU the backward pass is ours: it
  recomputes the attention matrix of one window and head at a time;
* ``flex``: FlexAttention with the bias added by a ``score_mod``, compiled on first use.
  It has no backward pass on CPU;
* ``auto``: ``flex`` on CUDA (where Triton is installed), ``sdpa`` everywhere else. The rule is
  fixed, not calibrated per machine: on both CPU types measured (AVX2 EPYC; AVX-512 EPYC with
  AVX512-BF16), for ESC's 32x32 windows with head dimension 16, torch's flash kernel (sdpa) was
  the fastest exact formulation for inference (training: measured on the AVX2 machine). On the
  AVX-512 machine, one layer's core on the 1280x720-output feature map (4 heads x 60 windows x 1024
  tokens), 2 threads: sdpa 131 ms (62 G multiply-adds/s; 113 ms without the bias), the same on
  q, k, v strided as :meth:`WindowAttention._attend_in_windows` passes them 132 ms, sdpa with
  windows as the batch axis 135 ms, a query-blocked ``baddbmm`` (bias added by the product) +
  softmax + ``bmm`` 152 ms at its best block (one window, all 1024 queries), FlexAttention compiled
  for CPU 219 ms (plus seconds of compilation for every new input size), naive 897 ms. How these
  were measured (``benchmarks/attention_formulations.py``),
  and the commands, in BENCHMARKS.md ("CPU speed on an AVX-512 EPYC (issue 23)").

The authors' spellings ``Naive``, ``SDPA`` and ``Flex`` are accepted too.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .layers import ExportPath, PointwiseConv2d, is_pixel_major, mirror_pad, pointwise_conv, require

ATTN_TYPES = ('auto', 'naive', 'sdpa', 'flex')
_compiled_flex_attention = None


def normalize_attn_type(attn_type: str) -> str:
    """Return the canonical lowercase backend name, or raise ValueError naming ``attn_type``."""
    name = str(attn_type).lower()
    if name not in ATTN_TYPES:
        raise ValueError(f'attn_type must be one of {", ".join(ATTN_TYPES)} (any case); got {attn_type!r}')
    return name


def flex_attention_available(device: torch.device | str) -> bool:
    """Whether FlexAttention can run on ``device`` (CPU needs a C++ compiler, CUDA needs Triton)."""
    try:
        from torch.nn.attention import flex_attention  # noqa: F401
    except ImportError:
        return False
    if torch.device(device).type == 'cuda':
        try:
            import triton  # noqa: F401
        except ImportError:
            return False
        return True
    return torch.device(device).type == 'cpu'


def resolve_attn_type(attn_type: str, device: torch.device | str) -> str:
    """The backend that ``attn_type`` runs as for a call on ``device`` (``auto`` resolved)."""
    if attn_type != 'auto':
        return attn_type
    if torch.device(device).type == 'cuda' and flex_attention_available(device):
        return 'flex'
    return 'sdpa'


def _flex_attention():
    global _compiled_flex_attention
    if _compiled_flex_attention is None:
        from torch.nn.attention.flex_attention import flex_attention
        # Static shapes: after a second image size dynamo would switch to dynamic shapes, for which the CPU
        # kernel template of torch 2.13 generates C++ that does not compile (cur_kvSplitSize2 undeclared).
        _compiled_flex_attention = torch.compile(flex_attention, dynamic=False)
    return _compiled_flex_attention


def relative_position_index(window_size: int) -> Tensor:
    """``[N, N]`` indices into the ``(2ws-1)^2`` bias table for N = ws*ws tokens in row-major order.

    Entry (query, key) addresses ``(kr - qr + ws - 1) * (2ws - 1) + (kc - qc + ws - 1)``.
    """
    coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing='ij'))
    coords = coords.flatten(1)
    delta = coords[:, None, :] - coords[:, :, None] + window_size - 1  # key minus query
    return delta[0] * (2 * window_size - 1) + delta[1]


def _fused_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor) -> Tensor:
    """``softmax(q k^T / sqrt(d) + bias) v`` by :func:`F.scaled_dot_product_attention`.

    ``q, k, v``: ``(heads, windows, tokens, head_dim)``; ``bias``: ``(heads, tokens, tokens)``.
    """
    # Heads lead so that torch's CPU flash kernel applies one head's bias to every window in
    # turn while it is in the cache. The mask must be 4-D: with a 3-D one CPU torch takes its
    # math path, which materialises every window's scores.
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.unsqueeze(1))


class _SDPAWithMaskGradient(torch.autograd.Function):
    """:func:`_fused_attention` with a gradient for ``bias`` too, for CPU.

    torch's fused CPU kernel gives no gradient for a mask, and a mask that needs one sends sdpa
    to its math path, which keeps every window's attention matrix for the backward pass. Here
    the forward pass is the fused kernel, and the backward pass recomputes the attention matrix
    of one (head, window) at a time, small enough to stay in the caches, and takes all the
    gradients from it.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, q: Tensor, k: Tensor, v: Tensor, bias: Tensor) -> Tensor:
        # Detached: a mask that requires grad would send sdpa to its math path even here.
        out = _fused_attention(q, k, v, bias.detach())
        ctx.save_for_backward(q, k, v, bias, out)
        return out

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_out: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        q, k, v, bias, out = ctx.saved_tensors
        shape, windows, scale = q.shape, q.shape[1], q.shape[-1] ** -0.5
        q, k, v, out, grad_out = (t.flatten(0, 1) for t in (q, k, v, out, grad_out))
        # Softmax backward: dS = P * (dP - rowsum(dO * O)), with dP = dO v^T.
        row_term = (grad_out * out).sum(-1, keepdim=True)
        grad_q, grad_k, grad_v = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        grad_bias = torch.zeros_like(bias)
        for i in range(q.shape[0]):  # heads x windows
            head = i // windows
            probs = torch.addmm(bias[head], q[i], k[i].T, alpha=scale).softmax(-1)
            grad_v[i] = probs.T @ grad_out[i]
            grad_scores = torch.addmm(row_term[i], grad_out[i], v[i].T, beta=-1).mul_(probs)
            grad_bias[head] += grad_scores
            grad_q[i] = grad_scores @ k[i] * scale
            grad_k[i] = grad_scores.T @ q[i] * scale
        return grad_q.view(shape), grad_k.view(shape), grad_v.view(shape), grad_bias


class WindowAttention(ExportPath, nn.Module):
    """Multi-head self-attention inside non-overlapping square windows, with relative position bias.

    The input is reflect-padded at the bottom and right to multiples of ``window_size``
    (repeatedly mirrored when the image is smaller than the padding), attended window by
    window and cropped back, so any height and width >= 1 works.

    In export mode (see :class:`~esc_arch.archs.layers.ExportPath`) the ``[heads, N, N]`` bias is
    gathered from the ``[heads, (2ws-1)^2]`` table inside the graph with an index computed there,
    so that an ONNX file stores the table, not the expanded bias (16 MB per layer at ws 32).

    Args:
        dim (int): Channels; must be divisible by ``num_heads``.
        window_size (int): Side of the windows.
        num_heads (int): Attention heads.
        attn_type (str): ``auto``, ``naive``, ``sdpa`` or ``flex`` (see the module docstring). Default: ``auto``.
    """

    def __init__(self, dim: int, window_size: int, num_heads: int, attn_type: str = 'auto') -> None:
        super().__init__()
        require(dim % num_heads == 0, 'dim', f'({dim}) must be divisible by num_heads ({num_heads})')
        self.dim = dim
        self.window_size = window_size
        self.num_heads = num_heads
        self.attn_type = normalize_attn_type(attn_type)
        self.to_qkv = PointwiseConv2d(dim, dim * 3)
        self.to_out = PointwiseConv2d(dim, dim)
        self.relative_position_bias = nn.Parameter(torch.randn(num_heads, (2 * window_size - 1) ** 2) * 0.001)
        self.register_buffer('relative_index', relative_position_index(window_size), persistent=False)

    def extra_repr(self) -> str:
        return f'dim={self.dim}, window_size={self.window_size}, num_heads={self.num_heads}, attn_type={self.attn_type}'

    def position_bias(self) -> Tensor:
        """The ``[heads, N, N]`` bias added to the attention scores of every window."""
        if self.export_mode:
            return self._position_bias_in_graph()
        # index_select, and index_add in the backward pass, are several times faster on CPU than
        # advanced indexing with the 2-D index; and about four times faster on fp32 than on bf16
        # (measured on an AVX512-BF16 EPYC), so a half-precision table is gathered in fp32.
        tokens = self.relative_index.shape[0]
        table = self.relative_position_bias
        table = table.to(torch.promote_types(table.dtype, torch.float32))
        return table.index_select(1, self.relative_index.flatten()).view(-1, tokens, tokens)

    def _position_bias_in_graph(self) -> Tensor:
        """:meth:`position_bias` by two gathers with ``[ws, ws]`` indices built from ``arange``.

        The table, viewed as ``[heads, 2ws-1 (rows), 2ws-1 (cols)]``, is indexed by the row offset
        ``kr - qr + ws - 1`` and then by the column offset; no ``[N, N]`` index is stored.
        """
        ws, heads = self.window_size, self.num_heads
        positions = torch.arange(ws, device=self.relative_position_bias.device)
        offset = positions[None, :] - positions[:, None] + ws - 1  # [query, key]: key minus query
        table = self.relative_position_bias.view(heads, 2 * ws - 1, 2 * ws - 1)
        by_rows = table[:, offset]  # [heads, qr, kr, 2ws-1]
        bias = by_rows[:, :, :, offset]  # [heads, qr, kr, qc, kc]
        return bias.permute(0, 1, 3, 2, 4).reshape(heads, ws * ws, ws * ws)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        ws = self.window_size
        # Padding commutes with the 1x1 projection; before it, it moves a third of the channels.
        x = mirror_pad(x, (0, -w % ws, 0, -h % ws), any_size=self.export_mode)
        attend = self._attend_in_windows if is_pixel_major(x) and not self.export_mode else self._attend_in_image
        # Projected before the crop: the padded image is contiguous, the cropped one is not.
        return attend(x)[:, :, :h, :w]

    def _attend_in_image(self, x: Tensor) -> Tensor:
        """Projections on the padded image, q, k and v then gathered into windows (NCHW, and ONNX export)."""
        n, c, hp, wp = x.shape
        ws, heads, head_dim = self.window_size, self.num_heads, c // self.num_heads
        rows, cols = hp // ws, wp // ws
        # (3, heads, head_dim) channels and (rows, ws, cols, ws) pixels -> (3, heads, windows, tokens, head_dim)
        qkv = self.to_qkv(x).view(n, 3, heads, head_dim, rows, ws, cols, ws)
        qkv = qkv.permute(1, 2, 0, 4, 6, 5, 7, 3).reshape(3, heads, n * rows * cols, ws * ws, head_dim)
        out = self._attend(*qkv.unbind(0)).view(heads, n, rows, cols, ws, ws, head_dim)
        if self.export_mode:  # ONNX has no writes into views
            image = out.permute(1, 0, 6, 2, 4, 3, 5).reshape(n, c, hp, wp)
        else:
            # Written back through a window view of an image laid out like the input.
            image = torch.empty_like(x)
            image.view(n, heads, head_dim, rows, ws, cols, ws).permute(1, 0, 3, 5, 4, 6, 2).copy_(out)
        return self.to_out(image)

    def _attend_in_windows(self, x: Tensor) -> Tensor:
        """The same for a pixel-major (channels-last CPU) image, with the pixels put in window order once.

        Cut into windows before the projections, every tensor up to the output projection is a
        batch of channels-last windows: q, k and v are strided views of their projections, and
        sdpa's CPU kernel returns its output in that same (window, token, head) order, so the
        only copies are the one into windows and the one back. Three projections rather than one:
        an allocation above glibc's 32 MiB mmap limit is fresh pages, faulted in at every call.
        """
        n, c, hp, wp = x.shape
        ws, heads, head_dim = self.window_size, self.num_heads, c // self.num_heads
        rows, cols = hp // ws, wp // ws
        windows = x.permute(0, 2, 3, 1).view(n, rows, ws, cols, ws, c).transpose(2, 3)
        windows = windows.reshape(-1, ws, ws, c).permute(0, 3, 1, 2)  # (n rows cols, c, ws, ws), channels-last
        weights, biases = self.to_qkv.weight.split(c), self.to_qkv.bias.split(c)
        # each (windows, c, ws, ws) -> (heads, windows, tokens, head_dim) without a copy
        q, k, v = (pointwise_conv(windows, weight, bias).permute(0, 2, 3, 1).reshape(-1, ws * ws, heads, head_dim)
                   .permute(2, 0, 1, 3) for weight, bias in zip(weights, biases))
        out = self._attend(q, k, v).permute(1, 2, 0, 3).reshape(-1, ws, ws, c).permute(0, 3, 1, 2)
        out = self.to_out(out).permute(0, 2, 3, 1).view(n, rows, cols, ws, ws, c).transpose(2, 3)
        return out.reshape(n, hp, wp, c).permute(0, 3, 1, 2)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        backend = resolve_attn_type(self.attn_type, q.device)
        bias = self.position_bias().to(q.dtype)
        if backend == 'naive':
            scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1) + bias.unsqueeze(1)
            return scores.softmax(-1) @ v
        if backend == 'sdpa':
            if q.device.type == 'cpu' and bias.requires_grad and torch.is_grad_enabled():
                return _SDPAWithMaskGradient.apply(q, k, v, bias)
            return _fused_attention(q, k, v, bias)
        if q.device.type == 'cpu' and torch.is_grad_enabled() and q.requires_grad:
            raise RuntimeError("attn_type='flex' has no backward pass on CPU; use 'sdpa' or 'auto' to train on CPU")

        def add_bias(score: Tensor, head: Tensor, window: Tensor, query: Tensor, key: Tensor) -> Tensor:
            return score + bias[head, query, key]

        # Heads as flex's batch axis and windows as its head axis, like the other backends.
        return _flex_attention()(q, k, v, score_mod=add_bias)
