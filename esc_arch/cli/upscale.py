"""``basicsr upscale``: super-resolve your own images (and videos) with an ESC checkpoint.

Images are read by :func:`esc_arch.images.read_image` as they are stored (size checked before
decoding, EXIF orientation applied): 8-bit and 16-bit images are written back with the same depth
(32-bit float TIFFs as float), grayscale images are upscaled as RGB and written back as grayscale
(BT.601 luma, also with an alpha channel), and an alpha channel is upscaled separately with bicubic
interpolation. Every output is named before anything is written (:mod:`esc_arch.upscale_outputs`):
a run that would write over one of its inputs, write one file twice, or replace an existing file
without ``--overwrite`` is refused in one line. Each output appears only once it is complete
(:func:`esc_arch.files.atomic_output`). An error stops a single-file run (exit code 2); in a folder
the image is reported and skipped (exit code 1), except a write error (read-only folder, full
disk), which stops the run. Videos: :mod:`esc_arch.video` (the optional ``video`` extra).

Heavy modules (torch, OpenCV, the networks) are imported by :func:`run`, so that ``--help`` is fast.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from esc_arch.cli import CommandError
from esc_arch.cli.image_folders import add_max_pixels_argument, print_notice, sigterm_as_interrupt
from esc_arch.errors import ESCError, ImageError, OutputError
from esc_arch.upscale_outputs import OUTPUT_FORMATS, Job, find_inputs, plan_outputs

if TYPE_CHECKING:
    import numpy as np

    from esc_arch.images import ImageHeader

MAX_SCALE = 32
"""Largest ``--scale``/``--outscale``. The paper tests ESC+LTE up to x8 (Table 6); far beyond, an output is
mostly interpolation, and round(h * S) must stay a size that ``--max-pixels`` can judge."""
PRECISION_NAMES = ('fp32', 'bf16', 'fp16')
"""The keys of :data:`esc_arch.inference.PRECISIONS` (named here so that ``--help`` does not import torch)."""
DEFAULT_QUALITY = 95
"""JPEG and WebP quality (1-100): OpenCV's default for JPEG."""
_QUALITY_FORMATS = ('.jpg', '.jpeg', '.webp')


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``upscale`` options to an argparse parser."""
    parser.add_argument('-i', '--input', required=True,
                        help='image file, folder of images (png, bmp, jpg/jpeg, tif/tiff, webp) or video file '
                        '(mp4, m4v, mov, mkv, webm, avi: needs the video extra)')
    parser.add_argument('-o', '--output', required=True, help='folder for the upscaled files (created if needed)')
    parser.add_argument('--model',
                        help='preset name (ESC, ESC-light, ESC-FP, ESC-XL, ESC-Real, ESC-LTE; any case) or a BasicSR '
                        'options YAML with a network_g section (default: the network the checkpoint determines)')
    parser.add_argument('--weights', required=True,
                        help='checkpoint .pth (params_ema, params, a bare state dict or the authors\' LTE format) or '
                        '.safetensors; or a release name such as ESC_light_X4, found in the download folder of '
                        '"basicsr download"')
    parser.add_argument('--scale', type=_scale,
                        help='upscaling factor; read from the checkpoint when omitted; any number from 1 to '
                        f'{MAX_SCALE} (e.g. 3.5) for the arbitrary-scale ESC-LTE, whose output is round(h*S) x '
                        'round(w*S)')
    parser.add_argument('--outscale', type=_scale,
                        help=f'final scale (1 to {MAX_SCALE}) when it differs from the network\'s: its output is '
                        'resized to round(h*S) x round(w*S), with Lanczos (OpenCV INTER_LANCZOS4) when enlarging and '
                        'pixel-area averaging (INTER_AREA) when shrinking')
    parser.add_argument('--suffix', default='', type=_suffix,
                        help='added to output names: NAME_SUFFIX.EXT (default: none, outputs keep their input names)')
    parser.add_argument('--ext', choices=OUTPUT_FORMATS, default='auto',
                        help="format of image outputs; auto keeps each input's (default: auto)")
    parser.add_argument('--quality', type=_quality, default=DEFAULT_QUALITY,
                        help=f'JPEG/WebP quality, 1-100 (default: {DEFAULT_QUALITY})')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace outputs that exist already (never an input of the run)')
    parser.add_argument('--tile', type=_non_negative, default=0,
                        help='process the image in tiles of this many input pixels to bound memory (0: whole image); '
                        "rounded up to a multiple of the network's attention window")
    parser.add_argument('--tile-pad', type=_non_negative,
                        help='context pixels around each tile, rounded up likewise (default: two windows, at least 16 '
                        'pixels, which keeps tiled results within about 1e-3 of a whole-image pass)')
    parser.add_argument('--device', choices=('auto', 'cpu', 'cuda'), default='auto', help='default: auto')
    parser.add_argument('--precision', choices=PRECISION_NAMES, default='fp32',
                        help='fp16 and bf16 halve the memory of weights and kept activations; on a CPU without bf16 '
                        'arithmetic (AVX512-BF16, AMX) ~10x slower than fp32, with it 0.74x its time at 1280x720 '
                        '(BENCHMARKS.md); default: fp32')
    parser.add_argument('--compile', action='store_true',
                        help='compile the network with torch.compile (the first image takes longer; runs eagerly, '
                        'with a notice, where compilation is unavailable)')
    parser.add_argument('--compare', action='store_true',
                        help='also write, per image, OUTPUT/comparisons/NAME.png (NAME: the output\'s name without '
                        'its extension): the output, and bicubic against the network on an enlarged crop of the most '
                        'detailed region')
    add_max_pixels_argument(parser)
    parser.epilog = ('--max-pixels also bounds the output: an image (or video frame) whose upscaled size has more '
                     'pixels is refused before it is upscaled.')
    return parser


def _scale(text: str) -> int | float:
    """A scale from 1 to MAX_SCALE: an int when whole (ESC-family networks), else a float (arbitrary-scale ones)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'must be a number, got {text!r}') from None
    if not value >= 1:  # also NaN
        raise argparse.ArgumentTypeError(f'must be at least 1, got {text}')
    if value > MAX_SCALE:
        raise argparse.ArgumentTypeError(f'must be at most {MAX_SCALE}, got {text}')
    return int(value) if value.is_integer() else value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f'must be >= 0, got {value}')
    return value


def _quality(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f'must be from 1 to 100, got {value}')
    return value


def _suffix(text: str) -> str:
    if Path(text).name != text or text in ('.', '..') or any(ord(character) < 32 for character in text):
        raise argparse.ArgumentTypeError(f'must be part of a file name (no folders or control characters), '
                                         f'got {text!r}')
    return text


def run(args: argparse.Namespace) -> int:
    """Upscale every image (or the video) of ``args.input``; returns 1 when any image failed (each is reported)."""
    jobs = _plan(args)
    weights = resolve_weights(args.weights)

    from esc_arch.comparison import network_label
    from esc_arch.inference import PRECISIONS, load_network, select_device, upscale_image
    from esc_arch.inference.compilation import compile_network

    device = select_device(args.device)
    network, scale = load_network(args.model, weights, args.scale, notify=partial(print_notice, 'upscale'))
    network = network.to(device=device, dtype=PRECISIONS[args.precision])
    final_scale = args.outscale or scale
    label = network_label(network, scale) + (f' resized to x{final_scale:g}' if final_scale != scale else '')
    if args.compile:
        network, _ = compile_network(network)

    def upscale(image: np.ndarray) -> np.ndarray:
        result = upscale_image(network, image, scale, args.tile, args.tile_pad)
        return resize_to(result, output_size(image.shape[0], image.shape[1], final_scale))

    failures = _process(jobs, args, upscale, final_scale, label)
    noun = 'file(s)' if _videos(jobs) else 'image(s)'
    print(f'upscaled {len(jobs) - failures} of {len(jobs)} {noun} x{final_scale:g} into {args.output}')
    return 1 if failures else 0


def _plan(args: argparse.Namespace) -> list[Job]:
    """The run's inputs and outputs, every check that needs no network done (before anything is written)."""
    from esc_arch.images import IMAGE_EXTENSIONS
    from esc_arch.video import VIDEO_EXTENSIONS, ffmpeg_executable

    sources = find_inputs(Path(args.input), IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, partial(print_notice, 'upscale'))
    if any(source.suffix.lower() in VIDEO_EXTENSIONS for source in sources):
        if args.ext != 'auto':
            raise CommandError('--ext applies to images: a video keeps its container')
        if args.compare:
            raise CommandError('--compare applies to images, not videos')
        ffmpeg_executable()  # a missing video extra is reported before the network is loaded
    return plan_outputs(sources, Path(args.output), args.suffix, args.ext, args.compare, args.overwrite)


def _videos(jobs: list[Job]) -> bool:
    from esc_arch.video import VIDEO_EXTENSIONS

    return any(job.source.suffix.lower() in VIDEO_EXTENSIONS for job in jobs)


def resolve_weights(weights: str) -> Path:
    """The weights file ``--weights`` names: a path, or a release name found in the download folder.

    Raises:
        CommandError: ``weights`` names a release that has not been downloaded (the message says how).
    """
    from esc_arch.zoo import PRETRAINED_DIR, find_release

    path = Path(weights)
    release = None if path.exists() else find_release(weights)
    if release is None:
        return path  # load_network reports a missing file
    downloaded = Path(PRETRAINED_DIR) / release.name
    if downloaded.is_file():
        return downloaded
    raise CommandError(f'{weights} is the released file {release.name}, which is not in {PRETRAINED_DIR}/ '
                       f'(relative to this folder): download it with "basicsr download {release.name}", '
                       'or give its path')


def _process(jobs: list[Job], args: argparse.Namespace, upscale: Callable[[np.ndarray], np.ndarray],
             final_scale: float, label: str) -> int:
    """Upscale and write each job, one line per file; returns the number of images that failed."""
    from tqdm import tqdm

    failures = 0
    with sigterm_as_interrupt():  # an interrupted write removes its temporary file, on kill as on Ctrl-C
        for job in tqdm(jobs, desc='files', unit='file', disable=None if len(jobs) > 1 else True):
            start = time.perf_counter()
            try:
                sizes = _process_one(job, args, upscale, final_scale, label)
            except OutputError:
                raise  # a read-only folder or a full disk fails every image: stop at once
            except (CommandError, ESCError) as err:
                if not Path(args.input).is_dir():
                    raise  # a single file: the command failed (exit code 2)
                tqdm.write(f'basicsr upscale: error: {err}', file=sys.stderr)
                failures += 1
                continue
            tqdm.write(f'{job.source.name}: {sizes} -> {job.target.name} in {time.perf_counter() - start:.2f} s')
    return failures


def _process_one(job: Job, args: argparse.Namespace, upscale: Callable[[np.ndarray], np.ndarray],
                 final_scale: float, label: str) -> str:
    """Upscale one file and write its outputs; returns its sizes, e.g. ``20x30 -> 40x60``."""
    from esc_arch.video import VIDEO_EXTENSIONS, upscale_video

    if job.source.suffix.lower() in VIDEO_EXTENSIONS:
        info, frames = upscale_video(job.source, job.target, upscale,
                                     lambda height, width: output_size(height, width, final_scale), args.max_pixels)
        height, width = output_size(info.height, info.width, final_scale)
        return f'{frames} frames {info.width}x{info.height} -> {width}x{height}'
    from esc_arch.comparison import upscale_comparison
    from esc_arch.images import read_image

    header = _header(job.source)
    if header is not None and header.pixels <= args.max_pixels:  # (a larger input is refused by read_image)
        _bounded_output(job.source, header.height, header.width, final_scale, args.max_pixels)
    image = read_image(job.source, max_pixels=args.max_pixels, notify=partial(print_notice, 'upscale'))
    height, width = _bounded_output(job.source, image.shape[0], image.shape[1], final_scale, args.max_pixels)
    result = upscale(image)
    write_output(result, job.target, args.quality)
    if job.comparison is not None:
        write_output(upscale_comparison(_gray_alpha_as_gray(image), _gray_alpha_as_gray(result), final_scale, label),
                     job.comparison, args.quality)
    return f'{image.shape[1]}x{image.shape[0]} -> {width}x{height}'


def _header(path: Path) -> ImageHeader | None:
    """The image header of ``path``, None when it cannot be read here (:func:`read_image` then says why)."""
    from esc_arch.images import read_header

    try:
        return read_header(path.read_bytes())
    except OSError:
        return None


def _bounded_output(source: Path, height: int, width: int, scale: float, max_pixels: int) -> tuple[int, int]:
    """The output size of a ``height`` x ``width`` input at ``scale``, refused above ``max_pixels``.

    Raises:
        ImageError: The output would have more than ``max_pixels`` pixels.
    """
    out_height, out_width = output_size(height, width, scale)
    if out_height * out_width > max_pixels:
        raise ImageError(f'{source}: the output would be {out_width}x{out_height} pixels, more than the limit of '
                         f'{max_pixels:,} (raise it with --max-pixels if you mean it)')
    return out_height, out_width


def output_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """``(round(height * scale), round(width * scale))``, at least 1x1: the size of every output at ``scale``."""
    from esc_arch.inference.arbitrary_scale import output_size as arbitrary_output_size

    return arbitrary_output_size(height, width, scale)


def resize_to(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` resized to ``size`` (height, width): Lanczos when enlarging, pixel-area averaging when shrinking.

    Lanczos (OpenCV's INTER_LANCZOS4, as Real-ESRGAN's ``--outscale``) keeps edges sharper than bicubic
    when enlarging; OpenCV's Lanczos is a fixed 8x8 kernel that aliases when shrinking, where INTER_AREA
    averages every covered pixel.
    """
    import cv2
    import numpy as np

    if image.shape[:2] == tuple(size):
        return image
    height, width = size
    shrinking = height * width < image.shape[0] * image.shape[1]
    resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LANCZOS4)
    if image.ndim == 3 and resized.ndim == 2:  # OpenCV drops a single channel axis
        resized = resized[..., None]
    return np.clip(resized, 0, 1) if resized.dtype == np.float32 else resized


def write_output(image: np.ndarray, path: Path, quality: int = DEFAULT_QUALITY) -> None:
    """Write ``image`` in the format of ``path``'s extension, atomically; JPEG and WebP at ``quality``.

    JPEG and WebP hold 8 bits: deeper images are rounded to 8 bits.

    Raises:
        ImageError: A JPEG output of an image with an alpha channel.
        OutputError: The image cannot be encoded or written.
    """
    from esc_arch.files import atomic_write_bytes
    from esc_arch.images import encode_image

    extension = path.suffix.lower()
    if extension in _QUALITY_FORMATS:
        data = _encode_8bit(image, extension, quality, path)
    else:
        try:
            data = encode_image(image, extension)
        except OutputError as err:
            raise OutputError(f'{path}: {err}') from None
    atomic_write_bytes(path, data)


def _encode_8bit(image: np.ndarray, extension: str, quality: int, path: Path) -> bytes:
    import cv2
    import numpy as np

    channels = image.shape[2] if image.ndim == 3 else 1
    if channels in (2, 4) and extension != '.webp':
        raise ImageError(f'{path}: the image has an alpha channel, which JPEG cannot hold: use --ext png or webp')
    if image.dtype == np.uint16:
        image = np.round(image / 257.0).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    if channels == 2:
        image = image[..., [0, 0, 0, 1]]
    flag = cv2.IMWRITE_WEBP_QUALITY if extension == '.webp' else cv2.IMWRITE_JPEG_QUALITY
    encoded, data = cv2.imencode(extension, image, [flag, quality])
    if not encoded:
        raise OutputError(f'{path}: cannot encode a {channels}-channel image as {extension}')
    return data.tobytes()


def _gray_alpha_as_gray(image: np.ndarray) -> np.ndarray:
    return image[..., 0] if image.ndim == 3 and image.shape[2] == 2 else image
