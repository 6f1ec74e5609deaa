"""``basicsr extract-subimages``: cut large training images (DIV2K) into overlapping sub-images.

Same crops and names as BasicSR's ``scripts/data_preparation/extract_subimages.py``: windows of
``crop-size`` every ``step`` pixels, plus one flush with the bottom/right border when more than
``thresh-size`` pixels would be left over; ``{name}_s{index:03d}{ext}``. Reading many small files (or
an LMDB of them, ``basicsr make-lmdb``) is much faster than cropping 2K images on the fly. For an LR
folder pass ``--scale``: sizes are given in HR pixels and divided by the scale, and the ``x{s}``
suffix is dropped from names, so that HR and LR sub-images pair up under the same names::

    basicsr extract-subimages -i datasets/DIV2K/DIV2K_train_HR -o datasets/DIV2K/DIV2K_train_HR_sub
    basicsr extract-subimages -i datasets/DIV2K/DIV2K_train_LR_bicubic/X4 \\
        -o datasets/DIV2K/DIV2K_train_LR_bicubic/X4_sub --scale 4
"""
import argparse
import os
from functools import partial

import numpy as np

from esc_arch.cli import CommandError
from esc_arch.cli.image_folders import (
    add_max_pixels_argument,
    add_workers_argument,
    failure_report,
    print_notice,
    run_parallel,
    sigterm_as_interrupt,
    staged_output_folders,
)
from esc_arch.errors import ImageError
from esc_arch.images import list_images, read_image, write_image


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('-i', '--input', required=True, help='folder of images')
    parser.add_argument('-o', '--output', required=True, help='new folder for the sub-images')
    parser.add_argument('--crop-size', type=int, default=480, help='sub-image side in HR pixels (default: 480)')
    parser.add_argument('--step', type=int, default=240, help='distance between sub-images in HR pixels (default: 240)')
    parser.add_argument('--thresh-size', type=int, default=0,
                        help='add a border-flush sub-image when more than this many HR pixels are left (default: 0)')
    parser.add_argument('--scale', type=int, default=1,
                        help='the input is an LR folder of this scale: divide the sizes by it and drop the x{scale} '
                        'suffix from names (default: 1, an HR folder)')
    add_max_pixels_argument(parser)
    add_workers_argument(parser)


def window_starts(length: int, crop_size: int, step: int, thresh_size: int) -> np.ndarray:
    """Start offsets of the windows along one axis (BasicSR's rule)."""
    starts = np.arange(0, length - crop_size + 1, step)
    if length - (starts[-1] + crop_size) > thresh_size:
        starts = np.append(starts, length - crop_size)
    return starts


def extract(name: str, input_folder: str, output_folder: str, crop_size: int, step: int, thresh_size: int,
            suffix: str, max_pixels: int) -> str | None:
    """Write the sub-images of one image; returns None, or the message of why the image cannot be used."""
    path = os.path.join(input_folder, name)
    try:
        img = read_image(path, max_pixels=max_pixels, notify=partial(print_notice, 'extract-subimages'))
        height, width = img.shape[:2]
        if height < crop_size or width < crop_size:
            raise ImageError(f'{path}: {width}x{height} image is smaller than the crop size {crop_size}')
    except ImageError as err:
        return str(err)
    stem, extension = os.path.splitext(name)
    stem = stem.removesuffix(suffix)
    index = 0
    for top in window_starts(height, crop_size, step, thresh_size):
        for left in window_starts(width, crop_size, step, thresh_size):
            index += 1
            write_image(np.ascontiguousarray(img[top:top + crop_size, left:left + crop_size]),
                        os.path.join(output_folder, f'{stem}_s{index:03d}{extension}'))
    return None


def run(args: argparse.Namespace) -> None:
    if args.scale < 1:
        raise CommandError(f'--scale must be at least 1; got {args.scale}')
    sizes = {'--crop-size': args.crop_size, '--step': args.step, '--thresh-size': args.thresh_size}
    for option, value in sizes.items():
        if value % args.scale or value < 0:
            raise CommandError(f'{option} {value} must be a non-negative multiple of --scale {args.scale}')
    if args.crop_size < 1 or args.step < 1:
        raise CommandError('--crop-size and --step must be positive')
    names = list_images(args.input, '--input')
    scale = args.scale
    # The folder appears complete or not at all: a bad image (all of them are reported) or an interruption
    # leaves nothing that would block a rerun.
    with sigterm_as_interrupt(), staged_output_folders([args.output], '--output') as staging:
        work = partial(extract, input_folder=args.input, output_folder=staging[os.path.normpath(args.output)],
                       crop_size=args.crop_size // scale, step=args.step // scale,
                       thresh_size=args.thresh_size // scale, suffix=f'x{scale}' if scale > 1 else '',
                       max_pixels=args.max_pixels)
        failures = [message for message in run_parallel(work, names, args.workers) if message]
        if failures:
            raise failure_report('extract-subimages', failures, args.output)
    print(f'{len(names)} images -> {len(os.listdir(args.output))} sub-images in {args.output}')
