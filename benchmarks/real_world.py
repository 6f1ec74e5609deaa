"""Cost of one ESC-Real training step against a classical one: ``python -m benchmarks.real_world [options]``.

Times, interleaved, full BasicSR model steps (``feed_data`` then ``optimize_parameters``; EMA and
optimizer updates included) built from the generated options files:

* classical x4: ``ESCModel``, ESC x4, LR patches given (``train_ESC_x4.yml``'s recipe);
* ESC-Real stage 1: ``ESCRealNetModel`` (``train_ESC_Real_x4_MSE.yml``): the Real-ESRGAN degradations are
  made in ``feed_data`` from the 400x400 HR crops that ``RealESRGANDataset`` yields, then the L1 step;
* ESC-Real stage 2: ``ESCRealGANModel`` (``train_ESC_Real_x4_GAN.yml``): degradations, then the generator
  (L1 + VGG19 perceptual + GAN) and UNet discriminator steps. VGG19 has random weights here (the cost
  does not depend on them; nothing is downloaded).

``feed_data`` and ``optimize_parameters`` are timed separately; a step is their sum. Data loading
(reading and cropping images, drawing kernels) happens in DataLoader workers and is not counted.
Prints a markdown table.
"""
import argparse
import os
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import yaml

import esc_arch  # noqa: F401  (registers the models and makes basicsr importable; must come first)

from basicsr.models import build_model

from . import measure

OPTIONS_DIR = Path(__file__).resolve().parents[1] / 'options'
CROP_PAD_SIZE = 400  # RealESRGANDataset pads or crops every HR image to this size


def parse_args(argv):
    parser = argparse.ArgumentParser(prog='python -m benchmarks.real_world', description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--batch', type=int, default=4, help='batch size (default: 4)')
    parser.add_argument('--gt-size', type=int, default=128, help='HR patch size (default: 128, LR 32 at x4)')
    parser.add_argument('--repeats', type=int, default=3, help='timed steps of each (default: 3)')
    parser.add_argument('--warmup', type=int, default=1, help='untimed steps of each first (default: 1)')
    parser.add_argument('--threads', type=int, help='torch threads (default: torch\'s choice)')
    return parser.parse_args(argv)


def _options(relative, device, gt_size, batch, models_dir):
    opt = yaml.safe_load((OPTIONS_DIR / relative).read_text())
    opt.update(num_gpu=1 if torch.device(device).type == 'cuda' else 0, is_train=True, dist=False, rank=0,
               world_size=1, gt_size=gt_size, queue_size=2 * batch)
    opt['path'] = dict(pretrain_network_g=None, param_key_g='params_ema', strict_load_g=True, models=models_dir,
                       training_states=models_dir)
    return opt


def _real_world_batch(batch, generator):
    """A batch as RealESRGANDataset yields it: 400x400 HR crops and three 21x21 kernels per image."""
    kernels = torch.from_numpy(generator.random((3, batch, 21, 21), dtype=np.float32))
    kernels /= kernels.sum(dim=(-2, -1), keepdim=True)
    gt = torch.from_numpy(generator.random((batch, 3, CROP_PAD_SIZE, CROP_PAD_SIZE), dtype=np.float32))
    return {'gt': gt, 'kernel1': kernels[0], 'kernel2': kernels[1], 'sinc_kernel': kernels[2]}


def build_steps(device, batch, gt_size, work_dir):
    """Name -> (feed, optimize) callables of the classical, stage-1 and stage-2 models."""
    from basicsr.archs import vgg_arch

    torch.manual_seed(0)
    generator = np.random.default_rng(0)
    vgg_weights = os.path.join(work_dir, 'vgg19.pth')
    torch.save(vgg_arch.vgg.vgg19().state_dict(), vgg_weights)
    vgg_arch.VGG_PRETRAIN_PATH = vgg_weights  # BasicSR loads VGG19 from here instead of downloading it

    classical = _options('train/train_ESC_x4.yml', device, gt_size, batch, work_dir)
    classical['path']['pretrain_network_g'] = None
    scale = classical['scale']
    lq = torch.rand(batch, 3, gt_size // scale, gt_size // scale)
    paired = {'lq': lq, 'gt': torch.nn.functional.interpolate(lq, scale_factor=scale, mode='bicubic')}
    models = {
        'classical x4 (ESCModel, ESC)': (build_model(classical), paired),
        'ESC-Real stage 1 (ESCRealNetModel)': (
            build_model(_options('train/train_ESC_Real_x4_MSE.yml', device, gt_size, batch, work_dir)),
            _real_world_batch(batch, generator)),
        'ESC-Real stage 2 (ESCRealGANModel)': (
            build_model(_options('train/train_ESC_Real_x4_GAN.yml', device, gt_size, batch, work_dir)),
            _real_world_batch(batch, generator)),
    }
    steps = {}
    for name, (model, data) in models.items():
        counter = iter(range(1, 1 << 30))
        steps[name] = (lambda model=model, data=data: model.feed_data(data),
                       lambda model=model, counter=counter: model.optimize_parameters(next(counter)))
    return steps


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as work_dir:
        steps = build_steps(args.device, args.batch, args.gt_size, work_dir)
        timings = {}
        for name, (feed, optimize) in steps.items():
            # In each round feed_data runs before optimize_parameters, as in training.
            pair = {f'{name}: feed_data': feed, f'{name}: optimize_parameters': optimize}
            timings.update(measure.time_interleaved(pair, args.device, args.repeats, args.warmup))
    wall = {key: float(np.median(value['times'])) for key, value in timings.items()}
    cpu = {key: float(np.median(value['cpu_times'])) for key, value in timings.items() if value.get('cpu_times')}
    classical = next(name for name in steps if name.startswith('classical'))
    print(f'Command: {shlex.join(["python", "-m", "benchmarks.real_world"] + sys.argv[1:])}; '
          f'device {args.device}, {torch.get_num_threads()} threads, torch {torch.__version__}, batch {args.batch}, '
          f'GT {args.gt_size}, median of {args.repeats} steps after {args.warmup} untimed\n')
    # CPU time first: on a shared machine the wall clock also counts the time spent waiting for a core.
    seconds, clock = (cpu, 'CPU time') if cpu else (wall, 'GPU time')
    print(f'| step | data synthesis (`feed_data`), {clock} | optimizer step (`optimize_parameters`), {clock} '
          f'| step, {clock} | vs classical | step, wall clock | vs classical |')
    print('|---|---|---|---|---|---|---|')
    for name in steps:
        print(f'| {name} | {seconds[f"{name}: feed_data"]:.2f} s | {seconds[f"{name}: optimize_parameters"]:.2f} s '
              f'| {_step(seconds, name):.2f} s | {_step(seconds, name) / _step(seconds, classical):.1f}x '
              f'| {_step(wall, name):.2f} s | {_step(wall, name) / _step(wall, classical):.1f}x |')


def _step(seconds, name):
    return seconds[f'{name}: feed_data'] + seconds[f'{name}: optimize_parameters']


if __name__ == '__main__':
    main()
