"""``basicsr export-onnx``: write a network as ONNX (dynamic batch, height, width) and check it with onnxruntime."""
import argparse
from functools import partial
from pathlib import Path

from esc_arch.cli import CommandError
from esc_arch.cli.image_folders import positive_int, print_notice
from esc_arch.defaults import CHECK_TOLERANCES, ONNX_OPSET, ONNX_PRECISIONS
from esc_arch.errors import ESCError, OutputError


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``export-onnx`` options to an argparse parser."""
    parser.add_argument('--model',
                        help='preset name (ESC, ESC-light, ESC-FP, ESC-XL, ESC-Real; any case) or a BasicSR options '
                        'YAML with a network_g section (default: the network the --weights checkpoint determines)')
    parser.add_argument('--weights', help='checkpoint .pth to export (default: the initial weights)')
    parser.add_argument('--scale', type=positive_int, help='upscaling factor; read from the checkpoint when omitted')
    parser.add_argument('-o', '--output', required=True, help='the .onnx file to write')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace an existing ONNX model at --output (a file of another kind is never replaced)')
    parser.add_argument('--opset', type=int, default=ONNX_OPSET, help=f'ONNX opset (default {ONNX_OPSET})')
    parser.add_argument('--precision', choices=ONNX_PRECISIONS, default='fp32',
                        help='weights and arithmetic of the graph; input and output stay float32 (fp16: the graph '
                        f'casts them; checked to {CHECK_TOLERANCES["fp16"]:g} of fp32 PyTorch). Default: fp32')
    parser.add_argument('--no-check', action='store_true',
                        help='skip comparing onnxruntime with PyTorch on two input sizes')
    return parser


def run(args: argparse.Namespace) -> None:
    """Export, then check unless ``--no-check``."""
    from esc_arch.export import check_onnx, export_onnx
    from esc_arch.inference import load_network

    output = Path(args.output)
    # A missing --weights is reported by load_network below ("checkpoint not found").
    if args.weights and output.exists() and Path(args.weights).exists() and output.samefile(args.weights):
        raise CommandError(f'refusing to overwrite the checkpoint {args.weights}: choose another output')
    network, scale = load_network(args.model, args.weights, args.scale, notify=partial(print_notice, 'export-onnx'))
    check_output(output, args.overwrite)
    try:
        export_onnx(network, output, opset=args.opset, precision=args.precision)
    except OSError as err:  # read-only folder, full disk (the temporary file is removed)
        if isinstance(err, ESCError):
            raise
        raise OutputError(f'cannot write {output}: {err.strerror or err}') from None
    print(f'wrote {output} (x{scale}, {args.precision}; input "input" and output "output", float32 NCHW RGB in '
          '[0, 1], dynamic batch, height and width)')
    if not args.no_check:
        differences = check_onnx(output, network, atol=CHECK_TOLERANCES[args.precision])
        report = ', '.join(f'{shape}: {difference:.1e}' for shape, difference in differences.items())
        print(f'onnxruntime matches PyTorch (largest absolute difference per input shape: {report})')


def check_output(output: Path, overwrite: bool) -> None:
    """Refuse to replace a folder or a file that is not an ONNX model, and an ONNX model without ``--overwrite``."""
    if output.is_dir():
        raise OutputError(f'--output {output} is a folder; give the .onnx file to write')
    if not output.exists():
        return
    if not is_onnx_model(output):
        raise OutputError(f'--output {output} exists and is not an ONNX model; refusing to overwrite it: choose '
                          'another output')
    if not overwrite:
        raise OutputError(f'--output {output} already exists; pass --overwrite to replace it')


def is_onnx_model(path: Path) -> bool:
    """Whether ``path`` holds an ONNX model (a ModelProto with a graph), read without its external data."""
    try:
        with open(path, 'rb') as file:
            if file.read(1) != b'\x08':  # field 1 (ir_version) comes first: rejects e.g. zip checkpoints unread
                return False
        import onnx

        model = onnx.load_model(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 (any unreadable or unparsable file is "not an ONNX model")
        return False
    return model.ir_version > 0 and len(model.graph.node) > 0
