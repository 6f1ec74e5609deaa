"""``basicsr profile``: parameters and FLOPs of a network for one image, as in the paper's Table 2."""
import argparse
from functools import partial

from esc_arch.cli import CommandError
from esc_arch.cli.image_folders import print_notice
from esc_arch.defaults import DEFAULT_OUTPUT_SIZE


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``profile`` options to an argparse parser."""
    parser.add_argument('--model',
                        help='preset name (ESC, ESC-light, ESC-FP, ESC-XL, ESC-Real, ESC-LTE; any case) or a BasicSR '
                        'options YAML whose network_g section describes the network (any registered type, e.g. '
                        'SwinIR); default: the network the --weights checkpoint determines')
    parser.add_argument('--scale', help="upscaling factor (default: the checkpoint's, the YAML's, else 4); any "
                        'positive number for an arbitrary-scale network such as ESCLTE')
    parser.add_argument('--output-size', default='x'.join(map(str, DEFAULT_OUTPUT_SIZE)), metavar='WxH',
                        help='output image size; the input is this divided by the scale (default: %(default)s, '
                        "the paper's)")
    parser.add_argument('--weights', help='checkpoint whose network to profile (ESC-family networks)')
    return parser


def parse_size(text: str) -> tuple[int, int]:
    """``'1280x720'`` -> ``(1280, 720)``."""
    try:
        width, height = (int(part) for part in text.lower().split('x'))
    except ValueError:
        raise CommandError(f'--output-size must be WIDTHxHEIGHT, e.g. 1280x720; got {text!r}') from None
    if width < 1 or height < 1:
        raise CommandError(f'--output-size must be positive; got {text!r}')
    return width, height


def parse_scale(text: str) -> int | float:
    """An integer scale as an int, any other positive number as a float (arbitrary-scale networks)."""
    try:
        scale = float(text)
    except ValueError:
        raise CommandError(f'--scale must be a number; got {text!r}') from None
    if not scale > 0:
        raise CommandError(f'--scale must be positive; got {text!r}')
    return int(scale) if scale.is_integer() else scale


def run(args: argparse.Namespace) -> None:
    """Print the parameter count and the FLOPs."""
    from esc_arch.inference import load_network
    from esc_arch.profiling import profile_network

    output_size = parse_size(args.output_size)
    scale = parse_scale(args.scale) if args.scale is not None else None
    network, scale = load_network(args.model, args.weights, scale, notify=partial(print_notice, 'profile'))
    try:
        profile = profile_network(network, scale, output_size)
    except ValueError as err:  # an output size smaller than the scale
        raise CommandError(err) from None
    print(f'{type(network).__name__} x{scale}')
    print(profile.summary())
