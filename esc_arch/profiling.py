"""Parameters and FLOPs of a network for one image, counted the way the ESC paper's tables were made.

The paper's #FLOPs column (Table 2) comes from fvcore's ``FlopCountAnalysis`` with plain ("naive")
attention, for one image of 1280x720 *output* pixels. Its conventions: one multiply-add is one
FLOP; convolutions and matrix products (including the attention scores and the weighted sum)
are counted, LayerNorm as 5 per element and adaptive average pooling as 1 per input element,
nearest upsampling as 1 per output element, bilinear upsampling and ``grid_sample`` (any mode) as
4 per output element; activations, softmax, additions, pixel shuffle and bicubic upsampling are not.
Table 2's networks have no nearest or bilinear upsampling; ESC-Real (nearest, 391.80 G at x4 by
fvcore on the authors' code) and ESC+LTE (``grid_sample``) have.

Here the network runs on PyTorch's ``meta`` device (shapes only, no arithmetic, so ESC at 1280x720
takes a fraction of a second), convolutions, matrix products and resampling are counted by
:class:`torch.utils.flop_counter.FlopCounterMode` (two FLOPs per multiply-add, halved; resampling
with fvcore's per-element rates), and the normalisation and pooling layers by forward hooks.
"""
import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from esc_arch.archs.attention import WindowAttention
from esc_arch.archs.blocks import LayerNorm2d
from esc_arch.archs.introspection import bare_network, is_arbitrary_scale, network_window
from esc_arch.defaults import DEFAULT_OUTPUT_SIZE

__all__ = ['Profile', 'profile_network']

LAYER_NORM_FLOPS_PER_ELEMENT = 5  # fvcore: mean, variance, normalisation, scale and shift
# fvcore's FLOPs per output element of the resampling operators (ESC_REPRODUCTION.md, section 2): the
# operator is counted whatever its mode (ESC+LTE's nearest look-ups too); bicubic upsampling is not.
RESAMPLING_FLOPS_PER_ELEMENT = {
    torch.ops.aten.upsample_nearest2d: 1,
    torch.ops.aten.upsample_bilinear2d: 4,
    torch.ops.aten.grid_sampler_2d: 4,
}
# ESC's ConvAttn folds its per-image 3x3 kernel into the shared large kernel for a batch of one (one
# convolution instead of two). The authors' code, which the paper counted, always runs both, as ours
# does for larger batches: count a batch of two and halve (every layer is linear in the batch).
_BATCH = 2


@dataclass
class Profile:
    """What :func:`profile_network` counted.

    Attributes:
        params (int): Number of parameters (including relative position bias tables).
        flops (float): Total FLOPs (multiply-adds) for one image.
        breakdown (dict[str, float]): FLOPs per kind: ``conv``, ``matmul``, ``layer_norm``, ``pooling``,
            ``resampling`` (nearest/bilinear upsampling and ``grid_sample``).
        input_size (tuple[int, int]): LR width and height fed to the network.
        output_size (tuple[int, int]): Output width and height.
    """
    params: int
    flops: float
    breakdown: dict
    input_size: tuple
    output_size: tuple

    def summary(self) -> str:
        """Two lines: parameters, then FLOPs in G with one decimal (the paper's precision) and their split
        (the kinds the network has)."""
        (in_w, in_h), (out_w, out_h) = self.input_size, self.output_size
        parts = ', '.join(f'{kind} {value / 1e9:.2f} G' for kind, value in self.breakdown.items() if value)
        return (f'Params: {self.params:,} ({self.params / 1e3:.1f} K)\n'
                f'FLOPs: {self.flops / 1e9:.1f} G for a {out_w}x{out_h} output ({in_w}x{in_h} input; {parts})')


def profile_network(network: nn.Module, scale: float, output_size: tuple = DEFAULT_OUTPUT_SIZE) -> Profile:
    """Count the parameters of ``network`` and its FLOPs for one image of ``output_size`` output pixels.

    ``network`` itself is not modified: a copy is moved to the ``meta`` device, switched to plain
    attention (``attn_type = 'naive'``, where it has one) and run in eval mode.

    Args:
        network (nn.Module): Maps ``(N, 3, h, w)`` to ``(N, 3, h*scale, w*scale)``, or an
            arbitrary-scale network called as ``network(x, coord, cell)`` with a query per output pixel.
        scale (float): Upscaling factor; the input is ``floor(output_size / scale)``.
        output_size (tuple[int, int]): Output width and height. Default: 1280x720, as in the paper.

    A network that refuses inputs other than multiples of its window (BasicSR's SwinIR) is counted on
    the input padded to multiples of it (:func:`~esc_arch.archs.introspection.network_window`), as such
    networks' model classes do at test time. Networks that take any size (ESC) are counted on the
    unpadded input, as in the paper.

    Returns:
        Profile: Parameters, total FLOPs and their split by kind.
    """
    out_w, out_h = output_size
    # floor(size / scale), as the authors' evaluation (and integer division for integer scales)
    in_w, in_h = int(out_w / scale + 1e-9), int(out_h / scale + 1e-9)
    if in_w < 1 or in_h < 1:
        raise ValueError(f'output size {out_w}x{out_h} is smaller than the scale x{scale}')
    params = sum(parameter.numel() for parameter in network.parameters())
    model = copy.deepcopy(bare_network(network)).to('meta').eval()
    if hasattr(model, 'attn_type'):
        model.attn_type = 'naive'  # the fused backends hide the attention products from the counter

    extra = {'layer_norm': 0, 'pooling': 0, 'conv': 0}
    hooks = _add_layer_counters(model, extra)
    try:
        counter = _count(model, (in_h, in_w), (out_h, out_w))
    except RuntimeError:
        # Networks such as BasicSR's SwinIR take only multiples of their window; their model class
        # pads the input at test time. Count them on the input padded that way.
        window = network_window(model)
        if in_h % window == 0 and in_w % window == 0:
            raise
        extra.update(layer_norm=0, pooling=0, conv=0)
        in_h, in_w = in_h + -in_h % window, in_w + -in_w % window
        counter = _count(model, (in_h, in_w), (out_h, out_w))
    finally:
        for hook in hooks:
            hook.remove()
    breakdown = _breakdown(counter, extra)
    return Profile(params=params, flops=sum(breakdown.values()), breakdown=breakdown, input_size=(in_w, in_h),
                   output_size=(out_w, out_h))


def _add_layer_counters(model: nn.Module, extra: dict[str, float]) -> list:
    """Forward hooks that add to ``extra`` what FlopCounterMode does not count (or counts otherwise)."""
    def count_norm(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        extra['layer_norm'] += LAYER_NORM_FLOPS_PER_ELEMENT * inputs[0].numel()

    def count_pooling(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        extra['pooling'] += inputs[0].numel()

    def uncount_padded_projection(module: WindowAttention, inputs: tuple, output: torch.Tensor) -> None:
        # WindowAttention applies to_out to the padded image and crops afterwards (cheaper on the
        # contiguous padded tensor); the authors' code crops first. Count their way.
        n, channels, height, width = inputs[0].shape
        padded_pixels = (height + -height % module.window_size) * (width + -width % module.window_size)
        extra['conv'] -= n * channels * module.to_out.out_channels * (padded_pixels - height * width)

    hooks = []
    for module in model.modules():
        if isinstance(module, WindowAttention):
            hooks.append(module.register_forward_hook(uncount_padded_projection))
        elif isinstance(module, (LayerNorm2d, nn.LayerNorm)):
            hooks.append(module.register_forward_hook(count_norm))
        elif isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool1d)):
            hooks.append(module.register_forward_hook(count_pooling))
    return hooks


def _breakdown(counter: FlopCounterMode, extra: dict[str, float]) -> dict[str, float]:
    """FLOPs per kind for one image, from the counter's operators and the hooks' ``extra``."""
    per_op = counter.get_flop_counts().get('Global', {})
    conv = sum(count for op, count in per_op.items() if 'convolution' in str(op))
    resampling = sum(count for op, count in per_op.items() if op in RESAMPLING_FLOPS_PER_ELEMENT)
    matmul = sum(per_op.values()) - conv - resampling
    # FlopCounterMode counts a multiply-add as 2 FLOPs; fvcore (and the paper) as 1.
    return {'conv': (conv / 2 + extra['conv']) / _BATCH, 'matmul': matmul / 2 / _BATCH,
            'layer_norm': extra['layer_norm'] / _BATCH, 'pooling': extra['pooling'] / _BATCH,
            'resampling': resampling / _BATCH}


def _count(model: nn.Module, input_size: tuple[int, int], output_size: tuple[int, int] | None) -> FlopCounterMode:
    # FlopCounterMode counts an operator by its overload packet but decomposes any overload that is
    # not itself in its table (nearest upsampling into indexing): list both.
    formulas = {}
    for packet, rate in RESAMPLING_FLOPS_PER_ELEMENT.items():
        formula = _per_output_element(rate)
        formulas.update({packet: formula, **{getattr(packet, name): formula for name in packet.overloads()}})
    counter = FlopCounterMode(display=False, custom_mapping=formulas)
    with torch.no_grad(), counter:
        model(*_inputs(model, input_size, output_size))
    return counter


def _per_output_element(rate: float) -> Callable:
    """A FlopCounterMode formula: ``rate`` FLOPs per element of the operator's output."""
    def formula(*args: Any, out_shape: Sequence[int], **kwargs: Any) -> int:
        return rate * torch.Size(out_shape).numel()
    return formula


def _inputs(model: nn.Module, input_size: tuple[int, int], output_size: tuple[int, int] | None) -> tuple:
    """The meta-device arguments of ``model``: the LR batch, plus every output pixel's query for an
    arbitrary-scale network (a ``forward(x, coord, cell)`` such as ESCLTE's)."""
    lr = torch.empty(_BATCH, 3, *input_size, device='meta')
    if not is_arbitrary_scale(model):
        return (lr, )
    from esc_arch.archs.esc_lte import make_cell, make_coord

    count = output_size[0] * output_size[1]
    coord = make_coord(*output_size, device='meta').expand(_BATCH, count, 2)
    cell = make_cell(*output_size, count, device='meta').expand(_BATCH, count, 2)
    return lr, coord, cell
