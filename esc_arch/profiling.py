"""Parameters and FLOPs of a network for one image, counted the way the ESC paper's tables were made.

The paper's #FLOPs column (Table 2) comes from fvcore's ``FlopCountAnalysis`` with plain ("naive")
attention, for one image of 1280x720 *output* pixels. Its conventions: one multiply-add is one
FLOP; convolutions and matrix products (including the attention scores and the weighted sum)
are counted, LayerNorm as 5 per element and adaptive average pooling as 1 per input element;
activations, softmax, additions, pixel shuffle, nearest and bicubic upsampling are not.

Here the network runs on PyTorch's ``meta`` device (shapes only, no arithmetic, so ESC at 1280x720
takes a fraction of a second), convolutions and matrix products are counted by
:class:`torch.utils.flop_counter.FlopCounterMode` (two FLOPs per multiply-add, halved), and the
normalisation and pooling layers by forward hooks.
"""
import copy
import inspect
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from esc_arch.archs.attention import WindowAttention
from esc_arch.archs.blocks import LayerNorm2d
from esc_arch.errors import OptionsError
from esc_arch.inference.loading import network_options

__all__ = ['Profile', 'build_network_from_yaml', 'profile_network']

DEFAULT_OUTPUT_SIZE = (1280, 720)
SCALE_KEYS = ('upscaling_factor', 'upscale')  # ESC's network_g key, and that of BasicSR's SwinIR and others
LAYER_NORM_FLOPS_PER_ELEMENT = 5  # fvcore: mean, variance, normalisation, scale and shift
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
        breakdown (dict[str, float]): FLOPs per kind: ``conv``, ``matmul``, ``layer_norm``, ``pooling``.
        input_size (tuple[int, int]): LR width and height fed to the network.
        output_size (tuple[int, int]): Output width and height.
    """
    params: int
    flops: float
    breakdown: dict
    input_size: tuple
    output_size: tuple

    def summary(self) -> str:
        """Two lines: parameters, then FLOPs in G with one decimal (the paper's precision) and their split."""
        (in_w, in_h), (out_w, out_h) = self.input_size, self.output_size
        parts = ', '.join(f'{kind} {value / 1e9:.2f} G' for kind, value in self.breakdown.items())
        return (f'Params: {self.params:,} ({self.params / 1e3:.1f} K)\n'
                f'FLOPs: {self.flops / 1e9:.1f} G for a {out_w}x{out_h} output ({in_w}x{in_h} input; {parts})')


def build_network_from_yaml(path: str | Path, scale: float | None = None) -> tuple[nn.Module, float, int | None]:
    """Build the ``network_g`` of a BasicSR options file, of any registered type (ESC, BasicSR's SwinIR, ...).

    Args:
        path (str | Path): The options file.
        scale (float | None): Upscaling factor set on the network (its ``upscaling_factor`` or ``upscale``
            option). Default: the network's, else the file's top-level ``scale``.

    Returns:
        tuple: The network, its scale, and its ``window_size`` option (None where it has none).

    Raises:
        OptionsError: The file has no usable ``network_g``, its type is not registered, the network cannot
            be built from its options, or its scale is unknown.
    """
    from basicsr.archs import build_network
    from basicsr.utils.registry import ARCH_REGISTRY

    options = network_options(path, None)
    try:
        accepted = inspect.signature(ARCH_REGISTRY.get(options['type'])).parameters
    except KeyError:
        raise OptionsError(f'network_g:type {options["type"]!r} in {path} is not a registered network') from None
    key = next((key for key in SCALE_KEYS if key in accepted), None)  # None: an arbitrary-scale network
    if scale and key:
        options[key] = scale
    try:
        top_level_scale = yaml.safe_load(Path(path).read_text()).get('scale')
        network = build_network(options)
    except (TypeError, ValueError, KeyError) as err:
        raise OptionsError(f'cannot build network {options.get("type")!r} from {path}: {err}') from None
    network_scale = scale or (key and getattr(network, key, None)) or options.get(key) or top_level_scale
    if not network_scale:
        raise OptionsError(f'the scale of {options["type"]} in {path} is unknown: give --scale')
    return network, network_scale, options.get('window_size')


def profile_network(network: nn.Module, scale: float, output_size: tuple = DEFAULT_OUTPUT_SIZE,
                    window_size: int | None = None) -> Profile:
    """Count the parameters of ``network`` and its FLOPs for one image of ``output_size`` output pixels.

    ``network`` itself is not modified: a copy is moved to the ``meta`` device, switched to plain
    attention (``attn_type = 'naive'``, where it has one) and run in eval mode.

    Args:
        network (nn.Module): Maps ``(N, 3, h, w)`` to ``(N, 3, h*scale, w*scale)``, or an
            arbitrary-scale network called as ``network(x, coord, cell)`` with a query per output pixel.
        scale (float): Upscaling factor; the input is ``floor(output_size / scale)``.
        output_size (tuple[int, int]): Output width and height. Default: 1280x720, as in the paper.
        window_size (int | None): For a network that refuses inputs other than multiples of its window
            (BasicSR's SwinIR), its window (default: its ``window_size`` attribute): the input is then padded
            to multiples of it, as such networks' model classes do at test time. Networks that take any size
            (ESC) are counted on the unpadded input, as in the paper.

    Returns:
        Profile: Parameters, total FLOPs and their split by kind.
    """
    out_w, out_h = output_size
    # floor(size / scale), as the authors' evaluation (and integer division for integer scales)
    in_w, in_h = int(out_w / scale + 1e-9), int(out_h / scale + 1e-9)
    if in_w < 1 or in_h < 1:
        raise ValueError(f'output size {out_w}x{out_h} is smaller than the scale x{scale}')
    params = sum(parameter.numel() for parameter in network.parameters())
    model = copy.deepcopy(network).to('meta').eval()
    if hasattr(model, 'attn_type'):
        model.attn_type = 'naive'  # the fused backends hide the attention products from the counter

    extra = {'layer_norm': 0, 'pooling': 0, 'conv': 0}

    def count_norm(module, inputs, output):
        extra['layer_norm'] += LAYER_NORM_FLOPS_PER_ELEMENT * inputs[0].numel()

    def count_pooling(module, inputs, output):
        extra['pooling'] += inputs[0].numel()

    def uncount_padded_projection(module, inputs, output):
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
    try:
        counter = _count(model, (in_h, in_w), (out_h, out_w))
    except RuntimeError:
        # Networks such as BasicSR's SwinIR take only multiples of their window; their model class
        # pads the input at test time. Count them on the input padded that way.
        window = window_size or getattr(model, 'window_size', None)
        if not isinstance(window, int) or (in_h % window == 0 and in_w % window == 0):
            raise
        extra.update(layer_norm=0, pooling=0, conv=0)
        in_h, in_w = in_h + -in_h % window, in_w + -in_w % window
        counter = _count(model, (in_h, in_w), (out_h, out_w))
    finally:
        for hook in hooks:
            hook.remove()
    per_op = {str(op): count for op, count in counter.get_flop_counts().get('Global', {}).items()}
    conv = sum(count for op, count in per_op.items() if 'convolution' in op)
    matmul = sum(count for op, count in per_op.items() if 'convolution' not in op)
    # FlopCounterMode counts a multiply-add as 2 FLOPs; fvcore (and the paper) as 1.
    breakdown = {'conv': (conv / 2 + extra['conv']) / _BATCH, 'matmul': matmul / 2 / _BATCH,
                 'layer_norm': extra['layer_norm'] / _BATCH, 'pooling': extra['pooling'] / _BATCH}
    return Profile(params=params, flops=sum(breakdown.values()), breakdown=breakdown, input_size=(in_w, in_h),
                   output_size=(out_w, out_h))


def _count(model, input_size, output_size):
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(*_inputs(model, input_size, output_size))
    return counter


def _inputs(model, input_size, output_size):
    """The meta-device arguments of ``model``: the LR batch, plus every output pixel's query for an
    arbitrary-scale network (a ``forward(x, coord, cell)`` such as ESCLTE's)."""
    lr = torch.empty(_BATCH, 3, *input_size, device='meta')
    if 'coord' not in inspect.signature(model.forward).parameters:
        return (lr, )
    from esc_arch.archs.esc_lte import make_cell, make_coord

    count = output_size[0] * output_size[1]
    coord = make_coord(*output_size, device='meta').expand(_BATCH, count, 2)
    cell = make_cell(*output_size, count, device='meta').expand(_BATCH, count, 2)
    return lr, coord, cell
