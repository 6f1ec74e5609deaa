"""ONNX export: dynamic batch/height/width, parity with PyTorch in onnxruntime, file size, fp16, the command."""
import errno
import os

import numpy as np
import pytest
import torch
from helpers import TINY, one_line_error, perturbed

from esc_arch.archs import ESC, ESCFP, ESCReal
from esc_arch.cli import main
from esc_arch.errors import ExportError
from esc_arch.export import CHECK_SHAPES, CHECK_TOLERANCES, check_onnx, export_onnx, largest_difference

try:
    import onnx
    import onnxruntime  # noqa: F401
except ImportError:
    onnx = None
needs_onnx = pytest.mark.skipif(onnx is None, reason='the onnx extra is not installed (pip install onnx onnxruntime)')


def test_nan_on_both_sides_is_not_a_match():
    nan = np.array([0.5, np.nan], dtype=np.float32)
    assert largest_difference(nan, nan) == float('inf')
    assert largest_difference(nan, np.array([0.5, 0.5], dtype=np.float32)) == float('inf')
    assert largest_difference(np.array([0.5, 0.25]), np.array([0.5, 0.5])) == 0.25


@needs_onnx
@pytest.mark.parametrize('network_class, options', [
    (ESC, dict(upscaling_factor=3)),
    (ESC, dict(upscaling_factor=2, use_ln=True)),
    (ESCFP, dict(upscaling_factor=4)),
    (ESCReal, {}),
    (ESCReal, dict(upscaling_factor=2)),
])
def test_export_matches_pytorch_on_several_shapes(tmp_path, network_class, options):
    network = perturbed(network_class(**TINY, **options))
    export_onnx(network, tmp_path / 'net.onnx')
    # two sizes that differ from the traced one, a batch of 3, and inputs smaller than the padding
    shapes = (*CHECK_SHAPES, (3, 3, 9, 16), (1, 3, 1, 1), (1, 3, 2, 70))
    differences = check_onnx(tmp_path / 'net.onnx', network, shapes=shapes, atol=1e-4)
    assert set(differences) == set(shapes)


@needs_onnx
def test_command_exports_checkpoint_with_dynamic_axes(tiny_checkpoint, tmp_path, capsys):
    checkpoint, yaml_path, network = tiny_checkpoint
    output = tmp_path / 'onnx' / 'tiny.onnx'
    assert main(['export-onnx', '--model', str(yaml_path), '--weights', str(checkpoint), '-o', str(output)]) == 0
    assert 'onnxruntime matches PyTorch' in capsys.readouterr().out
    graph = onnx.load(str(output)).graph
    input_dims, output_dims = ([dim.dim_param or dim.dim_value for dim in value.type.tensor_type.shape.dim]
                               for value in (graph.input[0], graph.output[0]))
    assert input_dims == ['batch', 3, 'height', 'width']
    assert output_dims[0] == 'batch' and output_dims[2:] == ['out_height', 'out_width']
    # the exported weights are the checkpoint's: compare with the network saved in it
    network.convert()
    check_onnx(output, network)


@needs_onnx
def test_command_refuses_to_overwrite_the_checkpoint(tiny_checkpoint, capsys):
    checkpoint, yaml_path, _ = tiny_checkpoint
    before = checkpoint.read_bytes()
    assert main(['export-onnx', '--model', str(yaml_path), '--weights', str(checkpoint), '-o', str(checkpoint)]) != 0
    assert 'refusing to overwrite the checkpoint' in capsys.readouterr().err
    assert checkpoint.read_bytes() == before


@needs_onnx
def test_file_stores_the_bias_table_not_the_expanded_bias(tmp_path):
    # A 32x32 window: the expanded bias would be heads x 1024 x 1024 floats (16 MB) per layer.
    network = ESC(dim=64, pdim=16, kernel_size=13, n_blocks=1, conv_blocks=2, window_size=32, num_heads=4,
                  upscaling_factor=2)
    path = export_onnx(network, tmp_path / 'net.onnx')
    weight_bytes = 4 * sum(p.numel() for p in network.parameters())
    assert path.stat().st_size <= 1.5 * weight_bytes
    check_onnx(path, network, shapes=((1, 3, 20, 37), (2, 3, 33, 9)))


@needs_onnx
def test_fp16_export_has_float32_input_and_output(tmp_path):
    network = perturbed(ESC(**TINY, upscaling_factor=2))
    path = export_onnx(network, tmp_path / 'net16.onnx', precision='fp16')
    graph = onnx.load(str(path)).graph
    assert {value.type.tensor_type.elem_type for value in (*graph.input, *graph.output)} == {onnx.TensorProto.FLOAT}
    weights = {init.name: init.data_type for init in graph.initializer}
    assert weights['network.proj.weight'] == onnx.TensorProto.FLOAT16
    assert next(network.parameters()).dtype == torch.float32  # the network itself is left in float32
    differences = check_onnx(path, network, atol=CHECK_TOLERANCES['fp16'])
    assert max(differences.values()) > 0  # fp16 arithmetic, not a float32 graph


@needs_onnx
def test_nan_outputs_fail_the_check(tmp_path):
    network = perturbed(ESC(**TINY, upscaling_factor=2))
    with torch.no_grad():
        network.last.bias[0] = float('nan')
    path = export_onnx(network, tmp_path / 'nan.onnx')
    with pytest.raises(ExportError, match='inf means NaN'):
        check_onnx(path, network)


@needs_onnx
def test_command_exports_fp16(tiny_checkpoint, tmp_path, capsys):
    checkpoint, yaml_path, _ = tiny_checkpoint
    output = tmp_path / 'tiny16.onnx'
    assert main(['export-onnx', '--model', str(yaml_path), '--weights', str(checkpoint), '-o', str(output),
                 '--precision', 'fp16']) == 0
    out = capsys.readouterr().out
    assert 'fp16' in out and 'onnxruntime matches PyTorch' in out


def test_unknown_precision_is_refused(tmp_path):
    with pytest.raises(ExportError, match='precision'):
        export_onnx(ESC(**TINY), tmp_path / 'x.onnx', precision='int8')




@needs_onnx
def test_export_onnx_replaces_only_an_onnx_model_and_only_when_asked(tiny_checkpoint, tmp_path, capsys):
    checkpoint, yaml_path, _ = tiny_checkpoint
    command = ['export-onnx', '--model', str(yaml_path), '--weights', str(checkpoint), '--no-check']
    other_checkpoint = tmp_path / 'other.pth'
    other_checkpoint.write_bytes(checkpoint.read_bytes())
    one_line_error(capsys, [*command, '-o', str(other_checkpoint)],
                   f'--output {other_checkpoint} exists and is not an ONNX model; refusing to overwrite it')
    assert other_checkpoint.read_bytes() == checkpoint.read_bytes()
    one_line_error(capsys, [*command, '-o', str(tmp_path)], f'--output {tmp_path} is a folder')

    model = tmp_path / 'tiny.onnx'
    assert main([*command, '-o', str(model)]) == 0
    one_line_error(capsys, [*command, '-o', str(model)], f'--output {model} already exists; pass --overwrite')
    os.utime(model, (0, 0))
    assert main([*command, '-o', str(model), '--overwrite']) == 0
    assert model.stat().st_mtime > 0 and sorted(os.listdir(tmp_path)) == sorted(
        ['other.pth', 'tiny.onnx', checkpoint.name, yaml_path.name])


@needs_onnx
def test_export_onnx_write_error_is_one_line(tmp_path, monkeypatch, capsys):
    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch.onnx, 'export', disk_full)
    one_line_error(capsys, ['export-onnx', '--model', 'ESC-light', '--scale', '2', '-o', str(tmp_path / 'x.onnx')],
                   f'cannot write {tmp_path / "x.onnx"}: No space left on device')
    assert os.listdir(tmp_path) == []


@needs_onnx
@pytest.mark.parametrize('opset, reason', [(99, 'Unsupported onnx_opset_version: 99'),
                                           (7, 'ONNX export failed on arange, which is not implemented for opset 7')])
def test_export_onnx_opset_torch_cannot_use_is_one_line(tiny_checkpoint, tmp_path, capsys, opset, reason):
    checkpoint, yaml_path, _ = tiny_checkpoint
    output = tmp_path / 'x.onnx'
    one_line_error(capsys, ['export-onnx', '--model', str(yaml_path), '--weights', str(checkpoint), '-o', str(output),
                            '--opset', str(opset)], f'cannot export with ONNX opset {opset}: {reason}')
    assert sorted(os.listdir(tmp_path)) == ['tiny_ESC.yml', 'tiny_ESC_x2.pth']
