"""ONNX export of the ESC networks, with dynamic batch, height and width.

The TorchScript-based exporter (``torch.onnx.export(dynamo=False)``) is used: the dynamo exporter
of torch 2.13 cannot solve the shape constraints of the window padding. Exporting needs the
``onnx`` package; checking the result needs ``onnxruntime`` (``pip install onnx onnxruntime``).
"""
import os
import warnings
from pathlib import Path

import numpy as np
import torch

ONNX_OPSET = 17
CHECK_SHAPES = ((1, 3, 29, 53), (2, 3, 24, 61))
_DYNAMIC_AXES = {'input': {0: 'batch', 2: 'height', 3: 'width'},
                 'output': {0: 'batch', 2: 'out_height', 3: 'out_width'}}


class ExportError(RuntimeError):
    """The export failed, or the exported model does not match the PyTorch network."""


def export_onnx(network, path, opset=ONNX_OPSET):
    """Export a network to ONNX after its deployment re-parameterisation.

    The network is prepared in place: :meth:`convert` (when it has one), eval mode, and the
    ``naive`` attention backend (plain MatMul/Softmax, which every ONNX runtime runs).

    Args:
        network (nn.Module): Maps ``(N, 3, H, W)`` to ``(N, 3, sH, sW)``.
        path (str | Path): The ``.onnx`` file to write (replaced atomically).
        opset (int): ONNX opset. Default: 17.

    Returns:
        Path: ``path``.
    """
    try:
        import onnx  # noqa: F401  (torch's exporter needs it to write the file)
    except ImportError:
        raise ExportError('ONNX export needs the onnx package: pip install onnx onnxruntime') from None
    prepare_for_export(network)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp_path = path.with_name(f'.{path.name}.{os.getpid()}.part')
    sample = torch.rand(1, 3, 37, 45)  # not a window multiple, so the padding is traced as shape arithmetic
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter('ignore')  # tracer warnings on shape arithmetic; the exporter's deprecation notice
            torch.onnx.export(network, (sample,), str(temp_path), dynamo=False, opset_version=opset,
                              input_names=['input'], output_names=['output'],
                              dynamic_axes=_DYNAMIC_AXES)
        os.replace(temp_path, path)
    finally:
        temp_path.unlink(missing_ok=True)
    return path


def prepare_for_export(network):
    """Deployment form of a network: converted, eval mode, naive attention. Returns it."""
    if hasattr(network, 'convert'):
        network.convert()
    if hasattr(network, 'attn_type'):
        network.attn_type = 'naive'
    return network.eval()


def check_onnx(path, network, shapes=CHECK_SHAPES, atol=1e-4):
    """Compare onnxruntime's output with the network's on random inputs of several shapes.

    Args:
        path (str | Path): The exported ``.onnx`` file.
        network (nn.Module): The PyTorch network it was exported from.
        shapes (Sequence[tuple]): Input shapes ``(N, 3, H, W)``. Default: two different ones.
        atol (float): Largest accepted absolute difference. Default: 1e-4.

    Returns:
        dict[tuple, float]: The largest absolute difference for each shape.

    Raises:
        ExportError: onnxruntime is missing, or an output differs in shape or beyond ``atol``.
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
        differences[shape] = float(np.abs(output - expected).max())
        if differences[shape] > atol:
            raise ExportError(f'{path}: onnxruntime differs from PyTorch by {differences[shape]:.2e} '
                              f'(> {atol:g}) for input {shape}')
    return differences
