"""``basicsr make-lr``: bicubic LR folders from HR images, made as the SR benchmarks were.

Each HR image is cropped to a multiple of the scale (modcrop) and downsampled with MATLAB's
``imresize(HR, 1/s, 'bicubic')`` on uint8 (:func:`esc_arch.data.bicubic_downsample`, which reproduces
the Set5 and Set14 LR files bit for bit). Outputs use BasicSR's layout and names:
``OUTPUT/X{s}/{name}x{s}.png``, read with ``filename_tmpl: '{}x{s}'``.
"""
import argparse
import os
from functools import partial

from esc_arch.cli import CommandError, image_folders
from esc_arch.errors import ImageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('-i', '--input', required=True, help='folder of HR images')
    parser.add_argument('-o', '--output', required=True, help='folder that receives X2/, X3/, ... (e.g. '
                        'datasets/DIV2K/DIV2K_train_LR_bicubic)')
    parser.add_argument('--scale', type=int, nargs='+', default=[2, 3, 4], help='scales to make (default: 2 3 4)')
    image_folders.add_max_pixels_argument(parser)
    image_folders.add_workers_argument(parser)


def make_lr_image(name: str, hr_folder: str, scale_folders: dict[int, str], max_pixels: int) -> str | None:
    """Write the LR images of one HR image; returns None, or the message of why the image cannot be used."""
    import numpy as np

    from esc_arch.data.matlab_resize import bicubic_downsample
    from esc_arch.images import read_image, write_image

    from basicsr.data.transforms import mod_crop

    path = os.path.join(hr_folder, name)
    try:
        img = read_image(path, max_pixels=max_pixels, notify=partial(image_folders.print_notice, 'make-lr'))
        if img.dtype != np.uint8:
            raise ImageError(f'{path}: {img.dtype} image; make-lr needs 8-bit images')
        too_small = [scale for scale in scale_folders if min(img.shape[:2]) < scale]
        if too_small:
            raise ImageError(f'{path} is smaller than the scale {too_small[0]}')
    except ImageError as err:
        return str(err)
    stem = os.path.splitext(name)[0]
    for scale, folder in scale_folders.items():
        lr = bicubic_downsample(mod_crop(img, scale), scale)
        write_image(np.round(lr * 255).astype(np.uint8), os.path.join(folder, f'{stem}x{scale}.png'))
    return None


def run(args: argparse.Namespace) -> None:
    if any(scale < 2 for scale in args.scale):
        raise CommandError(f'--scale: scales must be at least 2; got {args.scale}')
    from esc_arch.images import list_images

    names = list_images(args.input, '--input')
    scale_folders = {scale: os.path.join(args.output, f'X{scale}') for scale in sorted(set(args.scale))}
    # All the LR folders appear together, complete, or none: a bad image (all of them are reported) or an
    # interruption leaves nothing that would block a rerun.
    with (image_folders.sigterm_as_interrupt(),
          image_folders.staged_output_folders(list(scale_folders.values()), '--output') as staging):
        staged = {scale: staging[os.path.normpath(folder)] for scale, folder in scale_folders.items()}
        work = partial(make_lr_image, hr_folder=args.input, scale_folders=staged, max_pixels=args.max_pixels)
        failures = [message for message in image_folders.run_parallel(work, names, args.workers) if message]
        if failures:
            raise image_folders.failure_report('make-lr', failures, args.output)
    print(f'{len(names)} images -> {", ".join(scale_folders.values())}')
