"""``basicsr export-onnx``: write a network as ONNX (dynamic batch, height, width) and check it with onnxruntime."""
from pathlib import Path

from esc_arch.checkpoint import CheckpointError
from esc_arch.cli import CommandError
from esc_arch.cli.upscale import load_network
from esc_arch.export import ONNX_OPSET, ExportError, check_onnx, export_onnx


def add_arguments(parser):
    """Add the ``export-onnx`` options to an argparse parser."""
    parser.add_argument('--model', required=True,
                        help='preset name (ESC, ESC-light, ESC-FP, ESC-XL, ESC-Real; any case) or a BasicSR options '
                        'YAML with a network_g section')
    parser.add_argument('--weights', help='checkpoint .pth to export (default: the initial weights)')
    parser.add_argument('--scale', type=int, help='upscaling factor; read from the checkpoint when omitted')
    parser.add_argument('-o', '--output', required=True, help='the .onnx file to write')
    parser.add_argument('--opset', type=int, default=ONNX_OPSET, help=f'ONNX opset (default {ONNX_OPSET})')
    parser.add_argument('--no-check', action='store_true',
                        help='skip comparing onnxruntime with PyTorch on two input sizes')
    return parser


def run(args):
    """Export, then check unless ``--no-check``."""
    output = Path(args.output)
    # A missing --weights is reported by load_network below ("checkpoint not found").
    if args.weights and output.exists() and Path(args.weights).exists() and output.samefile(args.weights):
        raise CommandError(f'refusing to overwrite the checkpoint {args.weights}: choose another output')
    try:
        network, scale = load_network(args.model, args.weights, args.scale)
        export_onnx(network, output, opset=args.opset)
        print(f'wrote {output} (x{scale}; input "input" and output "output", NCHW RGB in [0, 1], '
              'dynamic batch, height and width)')
        if not args.no_check:
            differences = check_onnx(output, network)
            report = ', '.join(f'{shape}: {difference:.1e}' for shape, difference in differences.items())
            print(f'onnxruntime matches PyTorch (largest absolute difference per input shape: {report})')
    except (CheckpointError, ExportError) as err:
        raise CommandError(err) from None
