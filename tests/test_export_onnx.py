"""ONNX export: dynamic batch/height/width, parity with PyTorch in onnxruntime, the ``export-onnx`` command."""
import pytest

from esc_arch.archs import ESC, ESCFP, ESCReal
from esc_arch.cli import main
from esc_arch.export import CHECK_SHAPES, check_onnx, export_onnx

from helpers import TINY, perturbed

onnx = pytest.importorskip('onnx', reason='the onnx extra is not installed (pip install onnx onnxruntime)')
pytest.importorskip('onnxruntime', reason='the onnx extra is not installed (pip install onnx onnxruntime)')


@pytest.mark.parametrize('network_class, options', [
    (ESC, dict(upscaling_factor=3)),
    (ESC, dict(upscaling_factor=2, use_ln=True)),
    (ESCFP, dict(upscaling_factor=4)),
    (ESCReal, {}),
])
def test_export_matches_pytorch_on_several_shapes(tmp_path, network_class, options):
    network = perturbed(network_class(**TINY, **options))
    export_onnx(network, tmp_path / 'net.onnx')
    # two sizes that differ from the traced one, a batch of 3, and inputs smaller than the padding
    shapes = (*CHECK_SHAPES, (3, 3, 9, 16), (1, 3, 1, 1), (1, 3, 2, 70))
    differences = check_onnx(tmp_path / 'net.onnx', network, shapes=shapes, atol=1e-4)
    assert set(differences) == set(shapes)


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


def test_command_refuses_to_overwrite_the_checkpoint(tiny_checkpoint, capsys):
    checkpoint, yaml_path, _ = tiny_checkpoint
    before = checkpoint.read_bytes()
    assert main(['export-onnx', '--model', str(yaml_path), '--weights', str(checkpoint), '-o', str(checkpoint)]) != 0
    assert 'refusing to overwrite the checkpoint' in capsys.readouterr().err
    assert checkpoint.read_bytes() == before
