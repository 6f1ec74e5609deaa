"""``basicsr make-lr``: bicubic LR folders from HR images, made as the SR benchmarks were.

Each HR image is cropped to a multiple of the scale (modcrop) and downsampled with MATLAB's
``imresize(HR, 1/s, 'bicubic')`` on uint8 (:func:`esc_arch.data.bicubic_downsample`, which reproduces
the Set5 and Set14 LR files bit for bit). Outputs use BasicSR's layout and names:
``OUTPUT/X{s}/{name}x{s}.png``, read with ``filename_tmpl: '{}x{s}'``.
"""
import os
from functools import partial

import numpy as np
from basicsr.data.transforms import mod_crop

from esc_arch.cli import CommandError
from esc_arch.cli.image_folders import (add_workers_argument, list_images, new_output_folder, read_image, run_parallel,
                                        write_image)
from esc_arch.data.matlab_resize import bicubic_downsample


def add_arguments(parser):
    parser.add_argument('-i', '--input', required=True, help='folder of HR images')
    parser.add_argument('-o', '--output', required=True, help='folder that receives X2/, X3/, ... (e.g. '
                        'datasets/DIV2K/DIV2K_train_LR_bicubic)')
    parser.add_argument('--scale', type=int, nargs='+', default=[2, 3, 4], help='scales to make (default: 2 3 4)')
    add_workers_argument(parser)


def make_lr_image(name, hr_folder, scale_folders):
    img = read_image(os.path.join(hr_folder, name))
    if img.dtype != np.uint8:
        raise CommandError(f'{os.path.join(hr_folder, name)}: {img.dtype} image; make-lr needs 8-bit images')
    stem = os.path.splitext(name)[0]
    for scale, folder in scale_folders.items():
        if min(img.shape[:2]) < scale:
            raise CommandError(f'{os.path.join(hr_folder, name)} is smaller than the scale {scale}')
        lr = bicubic_downsample(mod_crop(img, scale), scale)
        write_image(np.round(lr * 255).astype(np.uint8), os.path.join(folder, f'{stem}x{scale}.png'))


def run(args):
    if any(scale < 2 for scale in args.scale):
        raise CommandError(f'--scale: scales must be at least 2; got {args.scale}')
    names = list_images(args.input, '--input')
    scale_folders = {scale: os.path.join(args.output, f'X{scale}') for scale in sorted(set(args.scale))}
    for folder in scale_folders.values():
        new_output_folder(folder, '--output')
    run_parallel(partial(make_lr_image, hr_folder=args.input, scale_folders=scale_folders), names, args.workers)
    print(f'{len(names)} images -> {", ".join(scale_folders.values())}')
