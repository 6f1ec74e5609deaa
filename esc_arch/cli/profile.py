"""``basicsr profile``: parameters and FLOPs of a network for one image, as in the paper's Table 2."""
import inspect
from pathlib import Path

import yaml

from esc_arch.cli import CommandError
from esc_arch.errors import ESCError
from esc_arch.inference import load_network, network_options
from esc_arch.profiling import DEFAULT_OUTPUT_SIZE, profile_network

SCALE_KEYS = ('upscaling_factor', 'upscale')  # ESC's network_g key, and that of BasicSR's SwinIR and others


def add_arguments(parser):
    """Add the ``profile`` options to an argparse parser."""
    parser.add_argument('--model',
                        help='preset name (ESC, ESC-light, ESC-FP, ESC-XL, ESC-Real; any case) or a BasicSR options '
                        'YAML whose network_g section describes the network (any registered type, e.g. SwinIR); '
                        'default: the network the --weights checkpoint determines')
    parser.add_argument('--scale', help="upscaling factor (default: the checkpoint's, the YAML's, else 4); any "
                        'positive number for an arbitrary-scale network such as ESCLTE')
    parser.add_argument('--output-size', default='x'.join(map(str, DEFAULT_OUTPUT_SIZE)), metavar='WxH',
                        help='output image size; the input is this divided by the scale (default: %(default)s, '
                        "the paper's)")
    parser.add_argument('--weights', help='checkpoint whose network to profile (ESC-family networks)')
    return parser


def parse_size(text):
    """``'1280x720'`` -> ``(1280, 720)``."""
    try:
        width, height = (int(part) for part in text.lower().split('x'))
    except ValueError:
        raise CommandError(f'--output-size must be WIDTHxHEIGHT, e.g. 1280x720; got {text!r}') from None
    if width < 1 or height < 1:
        raise CommandError(f'--output-size must be positive; got {text!r}')
    return width, height


def build_from_yaml(path, scale):
    """The network of a YAML's ``network_g`` (any registered type), its scale and its ``window_size`` option."""
    from basicsr.archs import build_network
    from basicsr.utils.registry import ARCH_REGISTRY

    options = network_options(path, None)
    try:
        accepted = inspect.signature(ARCH_REGISTRY.get(options['type'])).parameters
    except KeyError:
        raise CommandError(f'network_g:type {options["type"]!r} in {path} is not a registered network') from None
    key = next((key for key in SCALE_KEYS if key in accepted), None)  # None: an arbitrary-scale network
    if scale and key:
        options[key] = scale
    try:
        top_level_scale = yaml.safe_load(Path(path).read_text()).get('scale')
        network = build_network(options)
    except (TypeError, ValueError, KeyError) as err:
        raise CommandError(f'cannot build network {options.get("type")!r} from {path}: {err}') from None
    network_scale = scale or (key and getattr(network, key, None)) or options.get(key) or top_level_scale
    if not network_scale:
        raise CommandError(f'the scale of {options["type"]} in {path} is unknown: give --scale')
    return network, network_scale, options.get('window_size')


def parse_scale(text):
    """An integer scale as an int, any other positive number as a float (arbitrary-scale networks)."""
    try:
        scale = float(text)
    except ValueError:
        raise CommandError(f'--scale must be a number; got {text!r}') from None
    if not scale > 0:
        raise CommandError(f'--scale must be positive; got {text!r}')
    return int(scale) if scale.is_integer() else scale


def run(args):
    """Print the parameter count and the FLOPs."""
    output_size = parse_size(args.output_size)
    scale = parse_scale(args.scale) if args.scale is not None else None
    is_yaml = args.model is not None and Path(args.model).suffix.lower() in ('.yml', '.yaml')
    try:
        if is_yaml and not args.weights:
            network, scale, window_size = build_from_yaml(args.model, scale)
        else:
            (network, scale), window_size = load_network(args.model, args.weights, scale), None
        profile = profile_network(network, scale, output_size, window_size)
    except (ESCError, ValueError) as err:
        raise CommandError(err) from None
    print(f'{type(network).__name__} x{scale}')
    print(profile.summary())
