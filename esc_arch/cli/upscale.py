"""``basicsr upscale``: super-resolve your own images with an ESC checkpoint.

Images are read by :func:`esc_arch.images.read_image` as they are stored (size checked before
decoding, EXIF orientation applied): 8-bit and 16-bit images are written back with the same depth
(32-bit float TIFFs as float), grayscale images are upscaled as RGB and written back as grayscale
(BT.601 luma, also with an alpha channel), and an alpha channel is upscaled separately with bicubic
interpolation. Outputs keep the input's file name; an input file is never overwritten, and each
output appears only once it is complete (written to a temporary file, then renamed). An error
stops a single-image run (exit code 2); in a folder the image is reported and skipped (exit code 1),
except a write error (read-only folder, full disk), which stops the run.
"""
import argparse
import sys
from functools import partial
from pathlib import Path

import numpy as np
from tqdm import tqdm

from esc_arch.cli import CommandError
from esc_arch.cli.image_folders import add_max_pixels_argument, print_notice, sigterm_as_interrupt
from esc_arch.errors import ESCError, OutputError
from esc_arch.images import IMAGE_EXTENSIONS, read_image, write_image
from esc_arch.images import list_images as list_folder
from esc_arch.inference import PRECISIONS, load_network, select_device, upscale_image
from esc_arch.inference.compare import upscale_comparison
from esc_arch.inference.compilation import compile_network


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``upscale`` options to an argparse parser."""
    parser.add_argument('-i', '--input', required=True,
                        help=f'image file or folder of images ({", ".join(IMAGE_EXTENSIONS)})')
    parser.add_argument('-o', '--output', required=True, help='folder for the upscaled images (created if needed)')
    parser.add_argument('--model',
                        help='preset name (ESC, ESC-light, ESC-FP, ESC-XL, ESC-Real, ESC-LTE; any case) or a BasicSR '
                        'options YAML with a network_g section (default: the network the checkpoint determines)')
    parser.add_argument('--weights', required=True,
                        help='checkpoint .pth (params_ema, params, a bare state dict or the authors\' LTE format) or '
                        '.safetensors')
    parser.add_argument('--scale', type=_scale,
                        help='upscaling factor; read from the checkpoint when omitted; any positive number (e.g. 3.5) '
                        'for the arbitrary-scale ESC-LTE, whose output is round(h*S) x round(w*S)')
    parser.add_argument('--tile', type=_non_negative, default=0,
                        help='process the image in tiles of this many input pixels to bound memory (0: whole image); '
                        "rounded up to a multiple of the network's attention window")
    parser.add_argument('--tile-pad', type=_non_negative,
                        help='context pixels around each tile, rounded up likewise (default: two windows, which '
                        'keeps tiled results within about 1e-3 of a whole-image pass)')
    parser.add_argument('--device', choices=('auto', 'cpu', 'cuda'), default='auto', help='default: auto')
    parser.add_argument('--precision', choices=tuple(PRECISIONS), default='fp32',
                        help='fp16 and bf16 halve the memory of weights and kept activations; on a CPU without bf16 '
                        'arithmetic (AVX512-BF16, AMX) ~10x slower than fp32, with it 0.7-1x its time (BENCHMARKS.md); '
                        'default: fp32')
    parser.add_argument('--compile', action='store_true',
                        help='compile the network with torch.compile (the first image takes longer; runs eagerly, '
                        'with a notice, where compilation is unavailable)')
    parser.add_argument('--compare', action='store_true',
                        help='also write, per image, OUTPUT/comparisons/NAME.png: the output, and bicubic against '
                        'the network on a zoomed crop of the most detailed region')
    add_max_pixels_argument(parser)
    return parser


def _scale(text: str) -> int | float:
    """A scale of at least 1: an int when whole (ESC-family networks), else a float (arbitrary-scale networks)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'must be a number, got {text!r}') from None
    if not 1 <= value < float('inf'):
        raise argparse.ArgumentTypeError(f'must be at least 1, got {text}')
    return int(value) if value.is_integer() else value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f'must be >= 0, got {value}')
    return value


def run(args: argparse.Namespace) -> int:
    """Upscale every image of ``args.input``; returns 1 when any image failed (each is reported)."""
    jobs = plan_outputs(list_images(Path(args.input)), Path(args.output))
    device = select_device(args.device)
    network, scale = load_network(args.model, args.weights, args.scale)
    network = network.to(device=device, dtype=PRECISIONS[args.precision])
    label = f'{type(network).__name__} x{scale}'
    if args.compile:
        network, _ = compile_network(network)

    failures = 0
    notify = partial(print_notice, 'upscale')
    with sigterm_as_interrupt():  # an interrupted write removes its temporary file, on kill as on Ctrl-C
        for source, target in tqdm(jobs, desc='images', unit='img', disable=None if len(jobs) > 1 else True):
            try:
                image = read_image(source, max_pixels=args.max_pixels, notify=notify)
                result = upscale_image(network, image, scale, args.tile, args.tile_pad)
                write_image(result, target)
                if args.compare:
                    write_image(upscale_comparison(_gray_alpha_as_gray(image), _gray_alpha_as_gray(result), scale,
                                                   label), comparison_path(target))
            except OutputError:
                raise  # a read-only folder or a full disk fails every image: stop at once
            except (CommandError, ESCError) as err:
                if not Path(args.input).is_dir():
                    raise  # a single image: the command failed (exit code 2)
                print(f'basicsr upscale: error: {err}', file=sys.stderr)
                failures += 1
    print(f'upscaled {len(jobs) - failures} of {len(jobs)} image(s) x{scale} into {args.output}')
    return 1 if failures else 0


def _gray_alpha_as_gray(image: np.ndarray) -> np.ndarray:
    return image[..., 0] if image.ndim == 3 and image.shape[2] == 2 else image


def list_images(path: Path) -> list[Path]:
    """The image files to process: ``path`` itself, or the images directly inside the folder ``path``."""
    if path.is_dir():
        return [path / name for name in list_folder(path, '--input')]
    if not path.exists():
        raise CommandError(f'--input not found: {path}')
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise CommandError(f'{path} is not a supported image type ({", ".join(IMAGE_EXTENSIONS)})')
    return [path]


def plan_outputs(images: list[Path], output_dir: Path) -> list[tuple[Path, Path]]:
    """Pair each input with its output path, refusing any pair that would overwrite an input."""
    if output_dir.exists() and not output_dir.is_dir():
        raise CommandError(f'output {output_dir} exists and is not a folder')
    jobs = [(image, output_dir / image.name) for image in images]
    for image, target in jobs:
        for output in (target, comparison_path(target)):
            if output.exists() and output.samefile(image):
                raise CommandError(f'refusing to overwrite the input {image}: choose another output folder')
    return jobs


def comparison_path(target: Path) -> Path:
    """Where ``--compare`` writes the comparison picture of the output ``target``."""
    return target.parent / 'comparisons' / f'{target.name}.png'

