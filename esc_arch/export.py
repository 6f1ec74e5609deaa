"""ONNX export of the ESC networks, with dynamic batch, height and width.

The TorchScript-based exporter (``torch.onnx.export(dynamo=False)``) is used: the dynamo exporter
of torch 2.13 cannot solve the shape constraints of the window padding. Exporting needs the
``onnx`` package; checking the result needs ``onnxruntime`` (``pip install onnx onnxruntime``).

The network is traced in export mode (:func:`esc_arch.archs.set_export_mode`): every layer that has
a separate export path takes it. There, the relative position bias of each attention layer is
gathered in the graph from its ``[heads, (2ws-1)^2]`` table, so the file stores the table rather than
a ``[heads, ws^2, ws^2]`` bias and an index of that size per layer (ESC-light x4: 3.2 MB instead of
53 MB, for 2.5 MB of float32 weights).

Precisions: ``fp32``, and ``fp16``, whose weights and arithmetic are float16 while the input and
output stay float32 (the graph casts after the input and before the output), so that callers feed
the same arrays to either file.
"""
import copy
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .archs.introspection import is_arbitrary_scale
from .archs.layers import set_export_mode
from .defaults import CHECK_TOLERANCES, ONNX_OPSET, ONNX_PRECISIONS
from .errors import ExportError
from .files import atomic_output

CHECK_SHAPES = ((1, 3, 29, 53), (2, 3, 24, 61))
PRECISIONS = ONNX_PRECISIONS
"""Largest absolute difference from the float32 PyTorch network accepted by :func:`check_onnx`, per precision."""
_DYNAMIC_AXES = {'input': {0: 'batch', 2: 'height', 3: 'width'},
                 'output': {0: 'batch', 2: 'out_height', 3: 'out_width'}}


class _Float16WithFloat32Interface(nn.Module):
    """A float16 copy of ``network`` that takes and returns float32 tensors."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = copy.deepcopy(network).half()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x.half()).float()


def export_onnx(network: nn.Module, path: str | Path, opset: int = ONNX_OPSET, precision: str = 'fp32') -> Path:
    """Export a network to ONNX after its deployment re-parameterisation.

    The network is prepared in place by :func:`prepare_for_export` and traced in export mode, which is
    switched off again afterwards (the normal path is faster, and :func:`check_onnx` compares the file
    with it); an ``fp16`` export traces a float16 copy, the network itself stays float32.

    Args:
        network (nn.Module): Maps ``(N, 3, H, W)`` to ``(N, 3, sH, sW)``.
        path (str | Path): The ``.onnx`` file to write (replaced atomically, :func:`esc_arch.files.atomic_output`).
        opset (int): ONNX opset. Default: 17.
        precision (str): ``fp32`` or ``fp16`` (float32 input and output either way). Default: ``fp32``.

    Returns:
        Path: ``path``.

    Raises:
        ExportError: onnx is missing, ``precision`` is unknown, or the network cannot be exported with ``opset``.
        OutputError: The file cannot be written (read-only folder, full disk, ...).
    """
    if precision not in PRECISIONS:
        raise ExportError(f'precision must be one of {", ".join(PRECISIONS)}; got {precision!r}')
    if is_arbitrary_scale(network):
        raise ExportError(f'{type(network).__name__} is an arbitrary-scale network (image plus pixel queries); '
                          'its ONNX export is not supported')
    try:
        import onnx  # noqa: F401  (torch's exporter needs it to write the file)
    except ImportError:
        raise ExportError('ONNX export needs the onnx package: pip install onnx onnxruntime') from None
    prepare_for_export(network)
    set_export_mode(network, True)
    traced = _Float16WithFloat32Interface(network) if precision == 'fp16' else network
    sample = torch.rand(1, 3, 37, 45)  # not a window multiple, so the padding is traced as shape arithmetic
    try:
        with atomic_output(path) as temporary, torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter('ignore')  # tracer warnings on shape arithmetic; the exporter's deprecation notice
            torch.onnx.export(traced, (sample,), str(temporary), dynamo=False, opset_version=opset,
                              input_names=['input'], output_names=['output'], dynamic_axes=_DYNAMIC_AXES)
    except (torch.onnx.errors.OnnxExporterError, RuntimeError) as err:
        # An opset torch does not know ("Unsupported onnx_opset_version: 99") or too old for an operator.
        if 'opset' not in str(err):
            raise
        raise ExportError(f'cannot export with ONNX opset {opset}: {str(err).splitlines()[0]} '
                          f'(the default, {ONNX_OPSET}, works)') from None
    finally:
        set_export_mode(network, False)
    return Path(path)


def prepare_for_export(network: nn.Module) -> nn.Module:
    """Deployment form of a network, in place: converted, eval mode, naive attention. Returns it."""
    if hasattr(network, 'convert'):
        network.convert()
    if hasattr(network, 'attn_type'):
        network.attn_type = 'naive'
    return network.eval()


def largest_difference(output: np.ndarray, expected: np.ndarray) -> float:
    """Largest absolute difference between two arrays; ``inf`` where either holds a NaN.

    A NaN on both sides is a failure too: ``np.abs(nan - nan) > atol`` is False, so without this a
    broken export would pass a plain tolerance check.
    """
    if np.isnan(output).any() or np.isnan(expected).any():
        return float('inf')
    if output.size == 0:
        return 0.0
    return float(np.abs(output.astype(np.float64) - expected.astype(np.float64)).max())


def check_onnx(path: str | Path, network: nn.Module, shapes: tuple[tuple[int, int, int, int], ...] = CHECK_SHAPES,
               atol: float = CHECK_TOLERANCES['fp32']) -> dict[tuple, float]:
    """Compare onnxruntime's output with the network's on random inputs of several shapes.

    Args:
        path (str | Path): The exported ``.onnx`` file.
        network (nn.Module): The PyTorch network it was exported from.
        shapes (Sequence[tuple]): Input shapes ``(N, 3, H, W)``. Default: two different ones.
        atol (float): Largest accepted absolute difference (see ``CHECK_TOLERANCES``). Default: 1e-4.

    Returns:
        dict[tuple, float]: The largest absolute difference for each shape (``inf`` for a NaN).

    Raises:
        ExportError: onnxruntime is missing, or an output differs in shape, holds NaNs, or differs beyond ``atol``.
    """
    try:
        import onnxruntime
    except ImportError:
        raise ExportError('checking the export needs onnxruntime: pip install onnxruntime') from None
    session = onnxruntime.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    parameter = next(network.parameters())
    differences = {}
    for shape in shapes:
        sample = torch.rand(shape)
        with torch.no_grad():
            expected = network(sample.to(parameter)).float().cpu().numpy()
        output = session.run(None, {'input': sample.numpy()})[0]
        if output.shape != expected.shape:
            raise ExportError(f'{path}: input {shape} gives output {output.shape} in onnxruntime, '
                              f'{expected.shape} in PyTorch')
        differences[shape] = largest_difference(output, expected)
        if not differences[shape] <= atol:
            raise ExportError(f'{path}: onnxruntime differs from PyTorch by {differences[shape]:.2e} '
                              f'(> {atol:g}; inf means NaN in an output) for input {shape}')
    return differences
