"""BasicSR's own behaviour, probed for a comparison with and without esc_arch's patches.

PyPI's basicsr 1.4.2 ships no tests (its sdist has no ``tests/``, and there is no wheel), so this is
the closest check we can run: the public BasicSR functions that esc_arch patches, or that run under
the patches, called the way BasicSR's own tests and scripts call them, on small deterministic inputs.
Each probe prints a digest of what BasicSR returned (or the exception's type). Run it twice::

    python tests/basicsr_probes.py            # only the 'import' rows (basicsr cannot import without them)
    python tests/basicsr_probes.py --patched  # esc_arch.compat.apply_all() first

and compare the two JSON lines (tests/test_basicsr_unchanged.py does, and lists the probes that differ
on purpose). BasicSR without esc_arch cannot be imported at all next to torchvision >= 0.17, hence
the 'import' rows in both runs.
"""
import hashlib
import json
import os
import random
import sys
import tempfile

import cv2
import numpy as np
import torch

import esc_arch.compat

PROBES = {}


def probe(function):
    PROBES[function.__name__] = function
    return function


def digest(value):
    """A short, stable digest of tensors, arrays and plain containers."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return hashlib.sha256(np.ascontiguousarray(value.round(5)).tobytes()).hexdigest()[:16]
    if isinstance(value, dict):
        return {str(key): digest(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [digest(item) for item in value]
    return value if isinstance(value, (str, int, bool, type(None))) else repr(value)


def seeded():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


def image_folders(root):
    """``gt/`` (16x16) and ``lq/`` (8x8) with three PNG pairs, and their LMDBs."""
    from basicsr.utils.lmdb_util import make_lmdb_from_imgs

    rng = np.random.default_rng(0)
    for kind, size in (('gt', 16), ('lq', 8)):
        os.makedirs(os.path.join(root, kind))
        names = [f'im{index}.png' for index in range(3)]
        for name in names:
            cv2.imwrite(os.path.join(root, kind, name), rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
        make_lmdb_from_imgs(os.path.join(root, kind), os.path.join(root, f'{kind}.lmdb'), names,
                            [name[:-4] for name in names], map_size=1 << 24)


OPTIONS = """
name: probe
model_type: SRModel
scale: 2
num_gpu: 0
manual_seed: 10
datasets:
  train:
    name: t
    type: PairedImageDataset
    dataroot_gt: {root}/gt
    dataroot_lq: {root}/lq
    io_backend: {{type: disk}}
    gt_size: 8
    use_hflip: true
    use_rot: true
    batch_size_per_gpu: 2
network_g: {{type: MSRResNet, num_feat: 8, num_block: 1, upscale: 2}}
path: {{pretrain_network_g: ~, strict_load_g: true, resume_state: ~}}
train:
  ema_decay: 0.999
  optim_g: {{type: Adam, lr: !!float 2e-4, betas: [0.9, 0.99]}}
  scheduler: {{type: MultiStepLR, milestones: [10], gamma: 0.5}}
  total_iter: 10
  pixel_opt: {{type: L1Loss, loss_weight: 1.0}}
logger: {{print_freq: 1, save_checkpoint_freq: 10}}
"""


@probe
def parse_options(root):
    from basicsr.utils.options import parse_options

    path = os.path.join(root, 'train.yml')
    with open(path, 'w') as stream:
        stream.write(OPTIONS.format(root=root))
    saved = sys.argv
    sys.argv = ['train.py', '-opt', path, '--force_yml', 'train:ema_decay=0.5', 'logger:print_freq=[1, 2]']
    try:
        opt, args = parse_options(root, is_train=True)
    finally:
        sys.argv = saved
    return {'opt': json.loads(json.dumps(opt, default=str)), 'force_yml': args.force_yml, 'opt_file': args.opt}


@probe
def ordered_yaml(root):
    import yaml

    from basicsr.utils.options import ordered_yaml

    return yaml.load('a: 1\nb: !!float 1e-4\nc: [x, {d: ~}]\n', Loader=ordered_yaml()[0])


@probe
def paired_dataset(root):
    from basicsr.data import build_dataset

    results = {}
    for backend in ('disk', 'lmdb'):
        suffix = '.lmdb' if backend == 'lmdb' else ''
        for phase in ('train', 'val'):
            seeded()
            dataset = build_dataset({
                'name': f'{backend}-{phase}', 'type': 'PairedImageDataset', 'phase': phase, 'scale': 2,
                'dataroot_gt': f'{root}/gt{suffix}', 'dataroot_lq': f'{root}/lq{suffix}',
                'io_backend': {'type': backend}, 'gt_size': 8, 'use_hflip': True, 'use_rot': True})
            results[f'{backend}-{phase}'] = [digest({k: v for k, v in dataset[i].items()}) for i in range(len(dataset))]
    return results


@probe
def real_esrgan_dataset_with_meta_info(root):
    from basicsr.data import build_dataset

    meta_info = os.path.join(root, 'meta_info.txt')
    with open(meta_info, 'w') as stream:
        stream.write('im0.png\nim1.png\n')
    seeded()
    dataset = build_dataset({
        'name': 'real', 'type': 'RealESRGANDataset', 'phase': 'train', 'dataroot_gt': f'{root}/gt',
        'meta_info': meta_info, 'io_backend': {'type': 'disk'}, 'blur_kernel_size': 21,
        'kernel_list': ['iso'], 'kernel_prob': [1], 'sinc_prob': 0, 'blur_sigma': [0.2, 3], 'betag_range': [0.5, 4],
        'betap_range': [1, 2], 'blur_kernel_size2': 21, 'kernel_list2': ['iso'], 'kernel_prob2': [1],
        'sinc_prob2': 0, 'blur_sigma2': [0.2, 1.5], 'betag_range2': [0.5, 4], 'betap_range2': [1, 2],
        'final_sinc_prob': 0, 'use_hflip': True, 'use_rot': False})
    return [digest(dataset[index]) for index in range(len(dataset))]


@probe
def sr_model_loads_its_pretrained_network(root):
    from basicsr.archs.srresnet_arch import MSRResNet
    from basicsr.models import build_model

    seeded()
    path = os.path.join(root, 'net.pth')
    torch.save({'params': MSRResNet(num_feat=8, num_block=1, upscale=2).state_dict()}, path)
    model = build_model({'model_type': 'SRModel', 'num_gpu': 0, 'is_train': False, 'dist': False, 'scale': 2,
                         'network_g': {'type': 'MSRResNet', 'num_feat': 8, 'num_block': 1, 'upscale': 2},
                         'path': {'pretrain_network_g': path, 'strict_load_g': True, 'param_key_g': 'params'}})
    with torch.no_grad():
        return digest(model.net_g(torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))))


@probe
def spynet_loads_its_file(root):
    from basicsr.archs.spynet_arch import SpyNet

    seeded()
    path = os.path.join(root, 'spynet.pth')
    weights = {key: value for key, value in SpyNet().state_dict().items() if key not in ('mean', 'std')}
    torch.save({'params': weights}, path)  # as BasicSR's released file: the buffers are made after loading
    return digest(dict(SpyNet(load_path=path).state_dict()))


@probe
def networks(root):
    from basicsr.archs.edsr_arch import EDSR
    from basicsr.archs.rrdbnet_arch import RRDBNet
    from basicsr.archs.swinir_arch import SwinIR

    results = {}
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    for name, build in (('RRDBNet', lambda: RRDBNet(3, 3, num_feat=8, num_block=1, num_grow_ch=4, scale=2)),
                        ('EDSR', lambda: EDSR(3, 3, num_feat=8, num_block=1, upscale=2)),
                        ('SwinIR', lambda: SwinIR(upscale=2, img_size=16, window_size=4, embed_dim=12, depths=[1],
                                                  num_heads=[2], mlp_ratio=1, upsampler='pixelshuffledirect'))):
        seeded()
        with torch.no_grad():
            results[name] = digest(build().eval()(image))
    return results


@probe
def losses_and_metrics(root):
    from basicsr.losses import build_loss
    from basicsr.metrics import calculate_psnr, calculate_ssim

    rng = np.random.default_rng(3)
    first, second = (rng.integers(0, 256, (16, 16, 3)).astype(np.float64) for _ in range(2))
    prediction, target = (torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255 for image in (first, second))
    losses = {name: float(build_loss({'type': name, 'loss_weight': 1.0})(prediction, target))
              for name in ('L1Loss', 'MSELoss', 'CharbonnierLoss')}
    return {'losses': digest(np.array(list(losses.values()))),
            'psnr': round(calculate_psnr(first, second, crop_border=2), 5),
            'ssim': round(calculate_ssim(first, second, crop_border=2), 5)}


@probe
def registry_lookups(root):
    from basicsr.utils.registry import DATASET_REGISTRY

    return {name: DATASET_REGISTRY.get(name).__module__ for name in ('PairedImageDataset', 'RealESRGANDataset')}


def main():
    applied = esc_arch.compat.apply_all() if '--patched' in sys.argv else []
    results = {'applied': applied}
    with tempfile.TemporaryDirectory() as root:
        image_folders(root)
        for name, function in PROBES.items():
            try:
                results[name] = json.loads(json.dumps(digest(function(root))).replace(root, '<root>'))
            except Exception as error:  # a probe that fails is a result too: compare the failure
                results[name] = f'raised {type(error).__name__}'
    print(json.dumps(results, sort_keys=True))


if __name__ == '__main__':
    main()
