"""ESC+LTE at x2, x3, x4 as the authors test it: the benchmarks' LR files, the HR cropped to LR size x scale."""
import math
import re
from pathlib import Path

import cv2
import pytest
import torch
from helpers import TINY_LTE, committed_options, model_options, perturbed, run_basicsr, smooth_image, write_yaml
from torch.utils.data import DataLoader

import esc_arch  # noqa: F401  (registers the datasets and models)
from esc_arch.archs import ESCLTE, preset_config
from esc_arch.data.arbitrary_scale_dataset import ArbitraryScaleDataset, PairedArbitraryScaleDataset
from esc_arch.errors import DatasetError
from esc_arch.models.arbitrary_scale_model import ArbitraryScaleModel, calculate_lte_psnr


def write_pair(root, name, hr_size, lr_size, scale, seed=0):
    """An HR image and an unrelated LR image of ``lr_size`` named as the benchmark packs name them."""
    (root / 'HR').mkdir(parents=True, exist_ok=True)
    (root / f'X{scale}').mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / 'HR' / f'{name}.png'), smooth_image(*hr_size, seed=seed))
    cv2.imwrite(str(root / f'X{scale}' / f'{name}x{scale}.png'), smooth_image(*lr_size, seed=seed + 100))


def read_rgb(path):
    """An image file as the authors' loader gives it: RGB float in [0, 1], CHW."""
    return torch.from_numpy(cv2.imread(str(path))[..., ::-1].copy()).permute(2, 0, 1).float() / 255


def paired_dataset(root, scale, phase='test', lq_folder=None, **extra):
    opt = dict(name='paired', type='PairedArbitraryScaleDataset', dataroot_gt=str(root / 'HR'),
               dataroot_lq=str(lq_folder or root / f'X{scale}'), filename_tmpl=f'{{}}x{scale}',
               io_backend=dict(type='disk'), phase=phase, scale=scale)
    return PairedArbitraryScaleDataset({**opt, **extra})


def test_sample_is_the_lr_file_and_the_hr_cropped_to_lr_size_times_scale(tmp_path):
    write_pair(tmp_path, 'img0', (50, 47), (16, 15), 3)
    sample = paired_dataset(tmp_path, 3)[0]
    assert torch.equal(sample['lq'], read_rgb(tmp_path / 'X3' / 'img0x3.png'))  # the file as it is
    assert torch.equal(sample['gt'], read_rgb(tmp_path / 'HR' / 'img0.png')[:, :48, :45])
    assert sample['scale'] == 3.0 and isinstance(sample['scale'], float)
    # the keys of the LR-from-HR evaluation samples, so ArbitraryScaleModel needs nothing else
    made = ArbitraryScaleDataset(dict(name='made', dataroot_gt=str(tmp_path / 'HR'), io_backend=dict(type='disk'),
                                      phase='test', scale=3))[0]
    assert set(sample) == set(made) == {'lq', 'gt', 'scale', 'lq_path', 'gt_path'}
    assert made['gt'].shape == sample['gt'].shape and not torch.equal(made['lq'], sample['lq'])
    # a float scale that is a whole number is accepted (e.g. from --force_yml scale=3.0)
    assert torch.equal(paired_dataset(tmp_path, 3.0, lq_folder=tmp_path / 'X3', filename_tmpl='{}x3')[0]['gt'],
                       sample['gt'])


@pytest.mark.parametrize('phase, scale, message', [
    ('train', 3, 'is for validation and testing; train arbitrary-scale networks with ArbitraryScaleDataset'),
    ('test', 2.5, 'at an integer scale; got scale 2.5'),
    ('test', True, 'at an integer scale; got scale True'),
    ('test', 0, 'at an integer scale; got scale 0'),
    ('test', None, 'at an integer scale; got scale None'),
])
def test_refuses_training_and_non_integer_scales(tmp_path, phase, scale, message):
    write_pair(tmp_path, 'img0', (48, 45), (16, 15), 3)
    with pytest.raises(DatasetError, match=re.escape(message)):
        paired_dataset(tmp_path, scale, phase=phase, lq_folder=tmp_path / 'X3')


def test_lr_files_of_another_scale_are_refused(tmp_path):
    write_pair(tmp_path, 'img0', (48, 45), (16, 15), 3)
    dataset = paired_dataset(tmp_path, 2, lq_folder=tmp_path / 'X3', filename_tmpl='{}x3')
    with pytest.raises(DatasetError, match='Was the LR made for another scale'):
        dataset[0]


def tiny_model(tmp_path, scale):
    val = dict(metrics=dict(psnr=dict(type='calculate_lte_psnr', protocol='benchmark')))
    opt = model_options(tmp_path, scale=scale, network=dict(type='ESCLTE', **TINY_LTE), val=val, ema_decay=0)
    opt['model_type'] = 'ArbitraryScaleModel'
    torch.manual_seed(0)
    model = ArbitraryScaleModel(opt)
    perturbed(model.net_g)
    return model


def test_model_scores_the_lr_file_with_the_authors_psnr(tmp_path):
    for index, (hr_size, lr_size) in enumerate((((34, 40), (17, 20)), ((27, 30), (13, 15)))):
        write_pair(tmp_path, f'img{index}', hr_size, lr_size, 2, seed=index)
    dataset = paired_dataset(tmp_path, 2)
    model = tiny_model(tmp_path, 2)
    model.validation(DataLoader(dataset, batch_size=1), current_iter=1, tb_logger=None, save_img=False)
    # the same PSNR computed here: the network on the LR file, luma, 2 pixels shaved, unrounded clamped output
    network = model.get_bare_model(model.net_g).eval()
    expected = []
    for sample in dataset:
        with torch.no_grad():
            output = network.upscale(sample['lq'][None], tuple(sample['gt'].shape[-2:]), scale=2.0)
        assert 0 <= output.min() and output.max() <= 1 and not torch.equal(output, output.mul(255).round() / 255)
        expected.append(calculate_lte_psnr(output, sample['gt'][None], 2))
    assert len(expected) == 2 and expected[0] != pytest.approx(expected[1])
    assert model.metric_results['psnr'] == pytest.approx(sum(expected) / 2, abs=1e-5)


@pytest.mark.parametrize('scale', [2, 3, 4, 6, 8])
def test_options_read_the_lr_files_at_x2_x3_x4_only(scale):
    opt = committed_options(f'test/test_ESC_LTE_x{scale}.yml')
    for dataset in opt['datasets'].values():
        name = dataset['name']
        assert dataset['dataroot_gt'] == f'datasets/{name}/HR'
        if scale <= 4:
            assert dataset['type'] == 'PairedArbitraryScaleDataset'
            assert (dataset['dataroot_lq'], dataset['filename_tmpl']) == (f'datasets/{name}/LR_bicubic/X{scale}',
                                                                          f'{{}}x{scale}')
        else:
            assert dataset['type'] == 'ArbitraryScaleDataset' and 'dataroot_lq' not in dataset
    assert opt['val']['metrics'] == {'psnr': {'type': 'calculate_lte_psnr', 'protocol': 'benchmark'}}
    # ESC+LTE training still makes its LR from HR crops with PIL bicubic, as the authors train
    assert committed_options('train/train_ESC_LTE.yml')['datasets']['train']['type'] == 'ArbitraryScaleDataset'


def set5_from_options(datasets_dir, scale, kind='PairedArbitraryScaleDataset'):
    """Set5 as options/test/test_ESC_LTE_x<scale>.yml lists it, read from ../shared/datasets."""
    entry = dict(committed_options(f'test/test_ESC_LTE_x{scale}.yml')['datasets']['test_1'], type=kind)
    assert entry['name'] == 'Set5'
    for key in ('dataroot_gt', 'dataroot_lq'):
        if key in entry:
            entry[key] = str(datasets_dir.parent / entry[key])
    return dict(entry, phase='test', scale=scale)


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_set5_lr_files_are_read_and_differ_from_the_pil_lr(datasets_dir, scale):
    opt = set5_from_options(datasets_dir, scale)
    dataset = PairedArbitraryScaleDataset(opt)
    made = ArbitraryScaleDataset({key: value for key, value in opt.items() if key != 'dataroot_lq'})
    assert len(dataset) == len(made) == 5
    made_by_name = {Path(sample['gt_path']).stem: sample for sample in made}
    differing = total = 0
    for sample in dataset:
        other = made_by_name.pop(Path(sample['gt_path']).stem)
        name = Path(sample['gt_path']).stem
        assert Path(sample['lq_path']).name == f'{name}x{scale}.png'
        lq = read_rgb(sample['lq_path'])
        height, width = lq.shape[-2:]
        assert torch.equal(sample['lq'], lq)
        assert torch.equal(sample['gt'], read_rgb(sample['gt_path'])[:, :height * scale, :width * scale])
        assert torch.equal(other['gt'], sample['gt'])  # same HR crop in both protocols at integer scales
        differing += int((other['lq'] != sample['lq']).sum())
        total += lq.numel()
    assert differing / total > 0.15, differing / total  # MATLAB files, not PIL's bicubic of the HR (16-18% on Set5)


@pytest.mark.slow
def test_basicsr_test_with_the_generated_x2_options_on_set5(datasets_dir, tmp_path):
    """``basicsr test`` with test_ESC_LTE_x2.yml (tiny network) logs the PSNR computed here from the LR files."""
    torch.manual_seed(0)
    network = perturbed(ESCLTE(**TINY_LTE)).eval()
    weights = tmp_path / 'tiny_lte.pth'
    torch.save({'params': network.state_dict()}, weights)
    opt = committed_options('test/test_ESC_LTE_x2.yml')
    entry = set5_from_options(datasets_dir, 2)
    opt['datasets'] = {'test_1': {key: value for key, value in entry.items() if key not in ('phase', 'scale')}}
    opt['network_g'] = dict(preset_config('ESC-LTE'), **TINY_LTE)
    opt['path'].update(pretrain_network_g=str(weights), param_key_g='params')
    opt['num_gpu'] = 0
    write_yaml(tmp_path / 'test.yml', opt)
    result = run_basicsr(tmp_path, 'test', '-opt', 'test.yml')
    assert result.returncode == 0, result.stdout[-3000:]
    logged = float(re.search(r'# psnr: (\d+\.\d+)', result.stdout).group(1))

    scores = []
    for sample in PairedArbitraryScaleDataset(entry):
        with torch.no_grad():
            output = network.upscale(sample['lq'][None], tuple(sample['gt'].shape[-2:]), scale=2.0)
        scores.append(calculate_lte_psnr(output, sample['gt'][None], 2))
    assert math.isfinite(logged) and logged == pytest.approx(sum(scores) / len(scores), abs=2e-4)
