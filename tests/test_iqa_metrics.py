"""The paper's real-world metrics through pyiqa (esc_arch.metrics), offline: a fake pyiqa, no weight files."""
import re
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import (
    OPTIONS_DIR,
    TINY,
    basicsr_succeeds,
    committed_options,
    model_options,
    perturbed,
    smooth_image,
    write_yaml,
)

import esc_arch.metrics as iqa
from esc_arch.archs import ESCReal
from esc_arch.errors import OptionsError

from basicsr.data import build_dataloader, build_dataset
from basicsr.metrics import calculate_metric
from basicsr.models import build_model
from basicsr.utils.registry import METRIC_REGISTRY

FULL_REFERENCE = ('psnry', 'ssim', 'lpips', 'dists')
NO_REFERENCE = ('niqe', 'maniqa', 'musiq', 'clipiqa')
EXPECTED_FILES = {  # pyiqa 0.1.16's defaults for the paper's metrics
    'lpips': ['pyiqa/LPIPS_v0.1_alex-df73285e.pth', 'checkpoints/alexnet-owt-7be5be79.pth'],
    'dists': ['pyiqa/DISTS_weights-f5e65c96.pth', 'checkpoints/vgg16-397923af.pth'],
    'niqe': ['pyiqa/niqe_modelparameters.mat'],
    'maniqa': ['pyiqa/ckpt_koniq10k.pt', 'models--timm--vit_base_patch8_224.augreg2_in21k_ft_in1k'],
    'musiq': ['pyiqa/musiq_koniq_ckpt-e95806b9.pth'],
    'clipiqa': ['clip/RN50.pt'],
}


class FakeMetric:
    """Stands for a pyiqa metric: records its inputs; scores the mean absolute difference (FR) or the mean (NR)."""

    def __init__(self, name, options):
        self.name, self.options, self.calls = name, options, []
        self.metric_mode = 'FR' if name in FULL_REFERENCE else 'NR'

    def __call__(self, target, ref=None):
        self.calls.append((target, ref))
        value = target.mean(dim=(1, 2, 3)) if ref is None else (target - ref).abs().mean(dim=(1, 2, 3))
        return value[:, None]


@pytest.fixture
def fake_pyiqa(monkeypatch, tmp_path):
    """A ``pyiqa`` module whose ``create_metric`` builds :class:`FakeMetric`; empty torch hub and HF caches."""
    module = types.ModuleType('pyiqa')
    module.created = []

    def create_metric(name, **options):
        module.created.append(FakeMetric(name, options))
        return module.created[-1]

    module.create_metric = create_metric
    monkeypatch.setitem(sys.modules, 'pyiqa', module)
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    monkeypatch.setenv('HF_HUB_CACHE', str(tmp_path / 'huggingface'))
    monkeypatch.setattr(iqa, '_SCORERS', {})
    return module


def place_weight_files(metrics=iqa.PAPER_METRICS):
    """Empty files where pyiqa would find the weights of ``metrics``."""
    for file in iqa.pyiqa_weight_files(metrics):
        path = file.path / 'snapshots' / '0123abc' / 'model.safetensors' if file.path.name.startswith('models--') \
            else file.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b'')


def bgr_image(height=12, width=10, seed=0):
    return smooth_image(height, width, seed)  # uint8 HWC BGR, as BasicSR's metrics receive images


def test_without_pyiqa_the_error_is_one_line_and_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, 'pyiqa', None)  # `import pyiqa` raises ImportError
    monkeypatch.setattr(iqa, '_SCORERS', {})
    with pytest.raises(OptionsError) as error:
        iqa.calculate_pyiqa(bgr_image(), metric='niqe')
    message = str(error.value)
    assert '\n' not in message and 'needs the pyiqa package' in message and 'pip install "esc-arch[iqa]"' in message
    assert "calculate_niqe is BasicSR's NIQE (not the paper's)" in message


def test_missing_weight_files_are_named_in_one_line_and_nothing_is_downloaded(fake_pyiqa, tmp_path):
    with pytest.raises(OptionsError) as error:
        iqa.calculate_pyiqa(bgr_image(), bgr_image(seed=1), metric='lpips')
    message = str(error.value)
    assert '\n' not in message and message.startswith('pyiqa metric lpips needs ')
    for name in EXPECTED_FILES['lpips']:
        assert str(tmp_path / 'torch' / 'hub' / name) in message
    assert 'download: true' in message
    assert fake_pyiqa.created == []  # pyiqa was not asked to build (and so download) anything
    place_weight_files(['lpips'])
    assert iqa.calculate_pyiqa(bgr_image(), bgr_image(seed=1), metric='lpips') > 0
    assert [metric.name for metric in fake_pyiqa.created] == ['lpips']


def test_weight_file_list_says_where_each_file_is_and_whether_it_is_there(fake_pyiqa, tmp_path):
    files = iqa.pyiqa_weight_files()
    assert {file.metric for file in files} == set(EXPECTED_FILES)  # psnry and ssim need no file
    for metric, names in EXPECTED_FILES.items():
        paths = [file.path for file in files if file.metric == metric]
        assert [path.name for path in paths] == [Path(name).name for name in names]
        assert all(tmp_path in path.parents for path in paths)
    assert not any(file.present for file in files)
    summary = iqa.missing_weight_files()
    assert '\n' not in summary and summary.count('pyiqa metric ') == len(EXPECTED_FILES)
    assert 'pyiqa metric clipiqa needs ' + str(tmp_path / 'torch' / 'hub' / 'clip' / 'RN50.pt') in summary
    assert str(tmp_path / 'huggingface' / 'models--timm--vit_base_patch8_224.augreg2_in21k_ft_in1k') in summary
    place_weight_files(['niqe', 'maniqa'])
    assert {file.metric for file in iqa.pyiqa_weight_files() if file.present} == {'niqe', 'maniqa'}
    assert 'pyiqa metric niqe' not in iqa.missing_weight_files() and iqa.missing_weight_files(['niqe']) is None
    assert iqa.missing_weight_files(['psnry', 'ssim']) is None
    with pytest.raises(OptionsError, match="pyiqa metric 'fid': its files are known for psnry, ssim"):
        iqa.pyiqa_weight_files(['fid'])


def test_dispatch_through_basicsr_full_reference_and_no_reference(fake_pyiqa):
    assert METRIC_REGISTRY.get('calculate_pyiqa') is iqa.calculate_pyiqa
    place_weight_files()
    output, truth = bgr_image(seed=0), bgr_image(seed=1)
    data = {'img': output, 'img2': truth}  # what BasicSR's validation passes
    score = calculate_metric(data, {'type': 'calculate_pyiqa', 'metric': 'dists', 'better': 'lower', 'crop_border': 2})
    rgb = lambda image: torch.from_numpy(image[..., ::-1].copy()).permute(2, 0, 1)[None].float() / 255  # noqa: E731
    assert score == pytest.approx(float((rgb(output) - rgb(truth)).abs().mean()), rel=1e-6)
    (dists,) = fake_pyiqa.created
    target, ref = dists.calls[0]
    assert target.shape == (1, 3, 12, 10) and torch.equal(target, rgb(output)) and torch.equal(ref, rgb(truth))
    assert dists.options == {'device': None, 'crop_border': 2}  # `better` is BasicSR's, not pyiqa's
    calculate_metric(data, {'type': 'calculate_pyiqa', 'metric': 'dists', 'better': 'lower', 'crop_border': 2})
    assert len(fake_pyiqa.created) == 1 and len(dists.calls) == 2  # built once, then reused

    score = calculate_metric(data, {'type': 'calculate_pyiqa', 'metric': 'musiq', 'device': 'cpu'})
    musiq = fake_pyiqa.created[-1]
    assert musiq.calls[0][1] is None and score == pytest.approx(float(rgb(output).mean()), rel=1e-6)
    assert musiq.options == {'device': torch.device('cpu')}
    gray = iqa.calculate_pyiqa(output[..., 0], metric='musiq', device='cpu')  # a 2-D image is replicated
    assert gray == pytest.approx(float(output[..., 0].mean() / 255), rel=1e-6)


def test_option_mistakes_get_one_line_errors(fake_pyiqa):
    place_weight_files()
    with pytest.raises(OptionsError, match='compares the output with its ground truth, and this test set has none'):
        iqa.calculate_pyiqa(bgr_image(), metric='lpips')
    with pytest.raises(OptionsError, match='needs metric: NAME'):
        calculate_metric({'img': bgr_image()}, {'type': 'calculate_pyiqa'})
    with pytest.raises(OptionsError, match="pyiqa metric 'topiq_nr': esc_arch knows the files of .* set download"):
        iqa.calculate_pyiqa(bgr_image(), metric='topiq_nr')
    assert [metric.name for metric in fake_pyiqa.created] == ['lpips']


def test_download_true_lets_pyiqa_fetch_missing_files(fake_pyiqa):
    assert iqa.missing_weight_files(['maniqa'])
    iqa.check_pyiqa_metric('maniqa', download=True)
    assert np.isfinite(iqa.calculate_pyiqa(bgr_image(), metric='maniqa', download=True))
    assert np.isfinite(iqa.calculate_pyiqa(bgr_image(), metric='topiq_nr', download=True))
    assert [metric.name for metric in fake_pyiqa.created] == ['maniqa', 'topiq_nr']


# ---------------------------------------------------------------- the ESC-Real test options (paper Table 7)

REAL_OPTIONS = {  # file -> (paired, pyiqa)
    'test_ESC_Real_x4.yml': (False, False), 'test_ESC_Real_paired_x4.yml': (True, False),
    'test_ESC_Real_pyiqa_x4.yml': (False, True), 'test_ESC_Real_paired_pyiqa_x4.yml': (True, True),
}


def test_real_options_cover_the_four_sets_with_the_paper_metrics_or_offline_ones():
    names = set()
    for file, (paired, pyiqa) in REAL_OPTIONS.items():
        opt = committed_options(f'test/{file}')
        assert opt['model_type'] == 'ESCModel' and opt['scale'] == 4
        assert opt['path']['pretrain_network_g'] == 'experiments/pretrained_models/ESC_Real_X4_GAN.pth'
        assert opt['val']['pad_to_window'] is True and opt['val']['save_img'] is True
        datasets = list(opt['datasets'].values())
        names |= {dataset['name'] for dataset in datasets}
        for dataset in datasets:
            if paired:
                assert dataset['type'] == 'PairedImageDataset'
                assert (dataset['dataroot_lq'], dataset['dataroot_gt']) == (f'datasets/{dataset["name"]}/LR',
                                                                            f'datasets/{dataset["name"]}/HR')
            else:
                assert dataset['type'] == 'SingleImageDataset' and 'dataroot_gt' not in dataset
        metrics = opt['val']['metrics']
        if pyiqa:
            expected = FULL_REFERENCE + NO_REFERENCE if paired else NO_REFERENCE
            assert list(metrics) == list(expected)
            assert all(metric['type'] == 'calculate_pyiqa' and metric['metric'] == name
                       for name, metric in metrics.items())
            assert {name for name, metric in metrics.items() if metric.get('better') == 'lower'} == \
                {'lpips', 'dists', 'niqe'} & set(expected)
        else:
            assert list(metrics) == (['psnr', 'ssim', 'niqe'] if paired else ['niqe'])
            assert metrics['niqe'] == {'type': 'calculate_niqe', 'crop_border': 0, 'better': 'lower'}
            text = (OPTIONS_DIR / 'test' / file).read_text()
            assert "BasicSR's NIQE, on YCbCr's Y; the paper's is pyiqa's, on YIQ's Y: the values differ" in text
    assert names == {'RealSRSet+5', 'RealLQ250', 'RealSR', 'DRealSR'}


def write_pairs(root, count=2, lr_size=(8, 10)):
    for folder in ('LR', 'HR'):
        (root / folder).mkdir(parents=True)
    height, width = lr_size
    for index in range(count):
        cv2.imwrite(str(root / 'LR' / f'pair{index}.png'), smooth_image(height, width, seed=index))
        cv2.imwrite(str(root / 'HR' / f'pair{index}.png'), smooth_image(4 * height, 4 * width, seed=index + 10))


def test_paired_pyiqa_options_score_every_paper_metric_in_basicsr_validation(fake_pyiqa, tmp_path):
    place_weight_files()
    opt = committed_options('test/test_ESC_Real_paired_pyiqa_x4.yml')
    write_pairs(tmp_path / 'RealSR')
    data_opt = dict(opt['datasets']['test_1'], dataroot_lq=str(tmp_path / 'RealSR' / 'LR'),
                    dataroot_gt=str(tmp_path / 'RealSR' / 'HR'), phase='test', scale=4)
    loader = build_dataloader(build_dataset(data_opt), data_opt, num_gpu=0, dist=False)
    val = dict(opt['val'], save_img=False, pbar=False)
    model = build_model(model_options(tmp_path, scale=4, is_train=False, val=val,
                                      network=dict(type='ESCReal', **TINY, upscaling_factor=4)))
    model.validation(loader, current_iter=0, tb_logger=None, save_img=False)
    assert list(model.metric_results) == list(FULL_REFERENCE + NO_REFERENCE)
    assert all(np.isfinite(value) for value in model.metric_results.values())
    by_name = {metric.name: metric for metric in fake_pyiqa.created}
    assert set(by_name) == set(FULL_REFERENCE + NO_REFERENCE) and all(len(m.calls) == 2 for m in by_name.values())
    truths = {tuple(ref.flatten()[:20].tolist()) for _, ref in by_name['lpips'].calls}
    for index in range(2):  # the full-reference metrics got each HR file, RGB in [0, 1]
        hr = cv2.imread(str(tmp_path / 'RealSR' / 'HR' / f'pair{index}.png'))[..., ::-1]
        hr = torch.from_numpy(hr.copy()).permute(2, 0, 1)[None].float() / 255
        assert tuple(hr.flatten()[:20].tolist()) in truths
    assert all(ref is None and target.shape == (1, 3, 32, 40) for target, ref in by_name['clipiqa'].calls)


@pytest.mark.slow
def test_basicsr_test_with_the_paired_options_and_basicsr_metrics(tmp_path):
    """test_ESC_Real_paired_x4.yml through ``basicsr test`` (tiny network): PSNR, SSIM and NIQE, offline."""
    write_pairs(tmp_path / 'datasets' / 'RealSR', lr_size=(64, 64))  # BasicSR's NIQE needs 96-pixel blocks
    weights = tmp_path / 'tiny_real.pth'
    torch.save({'params_ema': perturbed(ESCReal(**TINY, upscaling_factor=4)).state_dict()}, weights)
    opt = committed_options('test/test_ESC_Real_paired_x4.yml')
    opt.update(num_gpu=0, network_g=dict(type='ESCReal', **TINY, upscaling_factor=4))
    opt['path']['pretrain_network_g'] = str(weights)
    output = basicsr_succeeds(tmp_path, 'test', '-opt', write_yaml(tmp_path / 'test.yml', opt))
    assert 'DRealSR' in output and 'not found' in output  # the missing set is skipped with a notice
    for metric in ('psnr', 'ssim', 'niqe'):
        assert re.search(rf'# {metric}: \d+\.\d+', output), output[-2000:]
    saved = tmp_path / 'results' / 'test_ESC_Real_paired_x4' / 'visualization' / 'RealSR'
    assert sorted(path.name for path in saved.iterdir()) == ['pair0_test_ESC_Real_paired_x4.png',
                                                              'pair1_test_ESC_Real_paired_x4.png']
