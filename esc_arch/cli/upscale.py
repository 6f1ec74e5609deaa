"""``basicsr upscale``: super-resolve your own images with an ESC checkpoint.

Images are read with OpenCV as they are stored: 8-bit and 16-bit images are written back with
the same depth (32-bit float TIFFs as float), grayscale images are upscaled as RGB and written
back as grayscale (BT.601 luma), and an alpha channel is upscaled separately with bicubic
interpolation. Outputs keep the input's file name; an input file is never overwritten, and each
output appears only once it is complete (written to a temporary file, then renamed).
"""
import argparse
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml
from basicsr.archs import build_network
from basicsr.utils.img_util import img2tensor, tensor2img
from tqdm import tqdm

from esc_arch.archs import preset_config
from esc_arch.checkpoint import CheckpointError, infer_network_config, load_into_network, load_state_dict
from esc_arch.cli import CommandError
from esc_arch.cli.image_folders import IMAGE_EXTENSIONS, read_image
from esc_arch.cli.image_folders import list_images as list_folder
from esc_arch.tiling import tiled_forward

PRECISIONS = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}
_PIXEL_MAX = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0, np.dtype(np.float32): 1.0}


def add_arguments(parser):
    """Add the ``upscale`` options to an argparse parser."""
    parser.add_argument('-i', '--input', required=True,
                        help=f'image file or folder of images ({", ".join(IMAGE_EXTENSIONS)})')
    parser.add_argument('-o', '--output', required=True, help='folder for the upscaled images (created if needed)')
    parser.add_argument('--model', required=True,
                        help='preset name (ESC, ESC-light, ESC-FP, ESC-XL, ESC-Real; any case) or a BasicSR options '
                        'YAML with a network_g section')
    parser.add_argument('--weights', required=True, help='checkpoint .pth (params_ema, params or a bare state dict)')
    parser.add_argument('--scale', type=int, help='upscaling factor; read from the checkpoint when omitted')
    parser.add_argument('--tile', type=_non_negative, default=0,
                        help='process the image in tiles of this many input pixels to bound memory (0: whole image); '
                        "rounded up to a multiple of the network's attention window")
    parser.add_argument('--tile-pad', type=_non_negative,
                        help='context pixels around each tile, rounded up likewise (default: two windows, which '
                        'keeps tiled results within about 1e-3 of a whole-image pass)')
    parser.add_argument('--device', choices=('auto', 'cpu', 'cuda'), default='auto', help='default: auto')
    parser.add_argument('--precision', choices=tuple(PRECISIONS), default='fp32',
                        help='fp16 and bf16 halve the memory of weights and kept activations; on a CPU without bf16 '
                        'arithmetic (no AVX512-BF16 or AMX) bf16 is about 10x slower than fp32 (BENCHMARKS.md); '
                        'default: fp32')
    return parser


def _non_negative(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f'must be >= 0, got {value}')
    return value


def _round_up(value, multiple):
    return -(-value // multiple) * multiple


def run(args):
    """Upscale every image of ``args.input``; returns 1 when any image failed (each is reported)."""
    jobs = plan_outputs(list_images(Path(args.input)), Path(args.output))
    device = select_device(args.device)
    try:
        network, scale = load_network(args.model, args.weights, args.scale)
    except CheckpointError as err:
        raise CommandError(err) from None
    network = network.to(device=device, dtype=PRECISIONS[args.precision])

    failures = 0
    for source, target in tqdm(jobs, desc='images', unit='img', disable=None if len(jobs) > 1 else True):
        try:
            image = read_image(source)
            result = upscale_image(network, image, scale, args.tile, args.tile_pad)
            write_image_atomic(result, target)
        except (CommandError, OSError) as err:
            print(f'basicsr upscale: error: {err}', file=sys.stderr)
            failures += 1
    print(f'upscaled {len(jobs) - failures} of {len(jobs)} image(s) x{scale} into {args.output}')
    return 1 if failures else 0


def list_images(path):
    """The image files to process: ``path`` itself, or the images directly inside the folder ``path``."""
    if path.is_dir():
        return [path / name for name in list_folder(path, '--input')]
    if not path.exists():
        raise CommandError(f'--input not found: {path}')
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise CommandError(f'{path} is not a supported image type ({", ".join(IMAGE_EXTENSIONS)})')
    return [path]


def plan_outputs(images, output_dir):
    """Pair each input with its output path, refusing any pair that would overwrite an input."""
    if output_dir.exists() and not output_dir.is_dir():
        raise CommandError(f'output {output_dir} exists and is not a folder')
    jobs = [(image, output_dir / image.name) for image in images]
    for image, target in jobs:
        if target.exists() and target.samefile(image):
            raise CommandError(f'refusing to overwrite the input {image}: choose another output folder')
    return jobs


def select_device(name):
    """``auto`` picks CUDA when available."""
    if name == 'cuda' and not torch.cuda.is_available():
        raise CommandError('--device cuda was asked for but no CUDA device is available')
    if name == 'auto':
        name = 'cuda' if torch.cuda.is_available() else 'cpu'
    return torch.device(name)


def load_network(model, weights=None, scale=None):
    """Build the network named by ``model``, load ``weights`` into it and convert it for inference.

    Args:
        model (str): Preset name or path to a YAML with ``network_g``.
        weights (str | None): Checkpoint path; None keeps the initial weights.
        scale (int | None): Upscaling factor; None takes the checkpoint's (else the preset's x4
            or the YAML's).

    Returns:
        tuple[nn.Module, int]: The converted network in eval mode, and its scale.

    Raises:
        CommandError: Unknown preset, unusable YAML, or a scale the checkpoint was not trained for.
        CheckpointError: The checkpoint is unreadable, unsafe or does not fit the network.
    """
    state_dict = load_state_dict(weights) if weights else None
    try:
        trained_scale = infer_network_config(state_dict)['upscaling_factor'] if state_dict else None
    except CheckpointError:
        trained_scale = None  # not ESC-family: load_into_network below explains the mismatch
    if scale and trained_scale and scale != trained_scale:
        raise CommandError(f'--scale {scale} does not match {weights}, which was trained for x{trained_scale}')
    options = network_options(model, scale or trained_scale)
    try:
        network = build_network(options)
    except (TypeError, ValueError, KeyError) as err:
        raise CommandError(f'cannot build network {options.get("type")!r} from {model}: {err}') from None
    if state_dict is not None:
        load_into_network(network, state_dict, source=str(weights))
    network_scale = getattr(network, 'upscaling_factor', scale)
    if not network_scale:
        raise CommandError(f'the scale of {options["type"]} is unknown: give --scale')
    if hasattr(network, 'convert'):
        network.convert()
    return network.eval(), network_scale


def network_options(model, scale):
    """``network_g`` options for a preset name or a BasicSR YAML, at ``scale`` when given."""
    path = Path(model)
    if path.suffix.lower() in ('.yml', '.yaml') or path.is_file():
        try:
            options = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as err:
            raise CommandError(f'cannot read options file {path}: {err}') from None
        if not isinstance(options, dict) or not isinstance(options.get('network_g'), dict):
            raise CommandError(f'{path} has no network_g section')
        options = dict(options['network_g'])
        if 'type' not in options:
            raise CommandError(f'network_g in {path} has no type')
        if scale:
            options['upscaling_factor'] = scale
        return options
    try:
        return preset_config(model, scale=scale or 4)
    except ValueError as err:
        raise CommandError(f'{err} (or give a YAML file)') from None


@torch.inference_mode()
def upscale_image(network, image, scale, tile=0, tile_pad=None):
    """Upscale an OpenCV image array (BGR/BGRA/gray, uint8/uint16/float32), keeping its layout and depth.

    Args:
        network (nn.Module): Super-resolution network (RGB in [0, 1]).
        image (ndarray): HxW, HxWx1, HxWx3 (BGR) or HxWx4 (BGRA) array.
        scale (int): The network's upscaling factor.
        tile (int): Tile size in input pixels, rounded up to a multiple of the network's attention
            window (``window_size``, if it has one): window-aligned tiles partition the image into the
            same windows as a whole-image pass. 0 processes the whole image at once.
        tile_pad (int | None): Context pixels around each tile, rounded up likewise. Default (None):
            two windows, which keeps tiled results within about 1e-3 of a whole-image pass.

    Returns:
        ndarray: The upscaled image, same dtype and channel layout.
    """
    tile = tile or 0
    if tile < 0 or (tile_pad or 0) < 0:
        raise ValueError(f'tile and tile_pad must be non-negative; got {tile} and {tile_pad}')
    window = getattr(network, 'window_size', 1)
    tile = _round_up(tile, window)
    tile_pad = _round_up(2 * window if tile_pad is None else tile_pad, window)
    pixel_max = _PIXEL_MAX[image.dtype]
    pixels = image.astype(np.float32) / pixel_max
    gray = pixels.ndim == 2 or pixels.shape[2] == 1
    alpha = pixels[..., 3] if not gray and pixels.shape[2] == 4 else None
    color = cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR) if gray else pixels[..., :3]

    parameter = next(network.parameters())
    lr = img2tensor(np.ascontiguousarray(color)).unsqueeze(0).to(parameter.device, parameter.dtype)
    with tqdm(desc='tiles', unit='tile', leave=False, disable=None if tile else True) as bar:
        def progress(done, total):
            bar.total = total
            bar.update(done - bar.n)

        try:
            sr = tiled_forward(network, lr, scale, tile, tile_pad, progress=progress)
        except torch.cuda.OutOfMemoryError:
            raise CommandError(f'out of memory on {parameter.device.type}: use a smaller --tile') from None
        except RuntimeError as err:
            if parameter.dtype == torch.float32:
                raise
            raise CommandError(f'{parameter.dtype} inference failed on {parameter.device.type} '
                               f'({str(err).splitlines()[0]}); use --precision fp32') from None
    result = tensor2img(sr, rgb2bgr=True, out_type=np.float32)
    if gray:
        result = cv2.cvtColor(result, cv2.COLOR_BGR2GRAY)
    if alpha is not None:
        height, width = result.shape[:2]
        upscaled_alpha = cv2.resize(alpha, (width, height), interpolation=cv2.INTER_CUBIC)
        result = np.dstack([result, np.clip(upscaled_alpha, 0, 1)])
    if image.dtype == np.float32:
        return result
    return np.round(result * pixel_max).astype(image.dtype)


def write_image_atomic(image, path):
    """Encode ``image`` in the format of ``path``'s extension and move it into place in one rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    encoded, data = cv2.imencode(path.suffix, image)
    if not encoded:
        raise CommandError(f'cannot encode {image.dtype} image as {path.suffix} for {path}')
    temp_path = path.with_name(f'.{path.name}.{os.getpid()}.part')
    try:
        temp_path.write_bytes(data.tobytes())
        os.replace(temp_path, path)
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise
