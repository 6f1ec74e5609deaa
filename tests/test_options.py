"""The options files: generated ones up to date, every YAML parsed by BasicSR and its network built."""
import importlib.util
import sys
from pathlib import Path

import pytest
import torch
import yaml
from helpers import OPTIONS_DIR

import esc_arch  # noqa: F401  (registers ESC before BasicSR builds anything)

from basicsr.archs import build_network  # noqa: E402
from basicsr.models import build_model  # noqa: E402
from basicsr.utils.options import ordered_yaml, parse_options  # noqa: E402

ALL_YAMLS = sorted(OPTIONS_DIR.rglob('*.yml'))
BENCHMARKS = ['Set5', 'Set14', 'B100', 'Urban100', 'Manga109']
MILESTONES = [250000, 400000, 450000, 475000, 490000]


def generator():
    spec = importlib.util.spec_from_file_location('generate_options', OPTIONS_DIR / 'generate_options.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load(path):
    with open(path) as stream:
        return yaml.load(stream, Loader=ordered_yaml()[0])


def parse(path, tmp_path, monkeypatch):
    """The options as ``basicsr train/test -opt path`` sees them."""
    monkeypatch.setattr(sys, 'argv', ['basicsr', '-opt', str(path)])
    opt, _ = parse_options(str(tmp_path), is_train='train' in load(path))
    return opt


def relative(path):
    return str(path.relative_to(OPTIONS_DIR))


def test_generated_options_are_up_to_date():
    expected = generator().all_options()
    for name, text in expected.items():
        assert (OPTIONS_DIR / name).read_text() == text, f'{name} is stale: run python options/generate_options.py'
    generated_folders = {relative(path) for path in ALL_YAMLS if path.parent != OPTIONS_DIR}
    assert generated_folders <= set(expected), 'options/train or options/test hold files the script does not make'


def test_every_paper_variant_and_scale_has_options():
    names = {relative(path) for path in ALL_YAMLS}
    for variant in ('ESC', 'ESC_light', 'ESC_FP'):
        for scale in (2, 3, 4):
            assert {f'train/train_{variant}_x{scale}.yml', f'test/test_{variant}_x{scale}.yml'} <= names
    assert {'test/test_ESC_XL_x4.yml', 'test/test_ESC_Real_x4.yml', 'train_ESC_x4.yml'} <= names


@pytest.mark.parametrize('path', [path for path in ALL_YAMLS if 'ESC_LTE' not in path.name],
                         ids=relative)  # ESC+LTE: tests/test_esc_lte.py
def test_yaml_parses_and_builds_its_network(path, tmp_path, monkeypatch):
    opt = parse(path, tmp_path, monkeypatch)
    with torch.device('meta'):  # shapes only: skips initialising ESC-XL's 12.5M weights
        network = build_network(dict(opt['network_g']))
    assert network.upscaling_factor == opt['scale']
    for dataset in opt['datasets'].values():
        for key in ('dataroot_gt', 'dataroot_lq'):
            assert key not in dataset or not Path(dataset[key]).is_absolute()


@pytest.mark.parametrize('path', [path for path in sorted((OPTIONS_DIR / 'test').glob('*.yml'))
                                  if 'ESC_Real' not in path.name and 'ESC_LTE' not in path.name],
                         ids=relative)  # tests/test_real_world.py, tests/test_esc_lte.py
def test_test_options_follow_the_paper_protocol(path):
    opt = load(path)
    scale = opt['scale']
    datasets = list(opt['datasets'].values())
    assert [dataset['name'] for dataset in datasets] == BENCHMARKS
    for dataset in datasets:
        assert dataset['dataroot_gt'] == f'datasets/{dataset["name"]}/HR'
        assert dataset['dataroot_lq'] == f'datasets/{dataset["name"]}/LR_bicubic/X{scale}'
        assert dataset['filename_tmpl'] == f'{{}}x{scale}'
    assert set(opt['val']['metrics']) == {'psnr', 'ssim'}
    for metric in opt['val']['metrics'].values():
        assert metric['crop_border'] == scale and metric['test_y_channel'] is True
    if opt['network_g']['type'] != 'Bicubic':
        assert opt['path']['param_key_g'] == 'params_ema' and opt['path']['strict_load_g'] is True


@pytest.mark.parametrize('path', [path for path in sorted((OPTIONS_DIR / 'train').glob('*.yml'))
                                  if 'ESC_Real' not in path.name and 'ESC_LTE' not in path.name]
                         + [OPTIONS_DIR / 'train_ESC_x4.yml'],
                         ids=relative)  # ESC-Real: tests/test_real_world.py; ESC+LTE: tests/test_esc_lte.py
def test_train_options_follow_the_paper_recipe(path):
    opt = load(path)
    scale, train = opt['scale'], opt['train']
    assert opt['model_type'] == 'ESCModel'
    assert dict(train['optim_g']) == {'type': 'AdamW', 'lr': 5e-4, 'weight_decay': 0, 'betas': [0.9, 0.9]}
    assert dict(train['scheduler']) == {'type': 'MultiStepLR', 'milestones': MILESTONES, 'gamma': 0.5}
    assert (train['total_iter'], train['warmup_iter'], train['ema_decay']) == (500000, 20000, 0.999)
    assert train['pixel_opt']['type'] == 'L1Loss'
    data = opt['datasets']['train']
    assert data['gt_size'] == 64 * scale and data['use_hflip'] and data['use_rot']
    assert data['batch_size_per_gpu'] * 4 == 64  # the paper's 4 GPUs
    if data['type'] == 'DownsampleImageDataset':  # DFLIP (paper Table 4): the LR is made from each HR crop
        assert data['dataroot_gt'] == 'datasets/DFLIP/DFLIP_HR.lmdb' and 'dataroot_lq' not in data
    else:
        assert data['dataroot_lq'] == f'datasets/DIV2K/DIV2K_train_LR_bicubic_X{scale}_sub.lmdb'
    assert opt['val']['metrics']['psnr']['crop_border'] == scale
    pretrain = opt['path']['pretrain_network_g']
    if scale == 2:
        assert pretrain is None
    else:  # x3 and x4 start from the x2 EMA weights of the same variant, loaded strictly
        assert pretrain == f'experiments/{opt["name"].replace(f"_x{scale}", "_x2")}/models/net_g_latest.pth'
        assert opt['path']['param_key_g'] == 'params_ema' and opt['path']['strict_load_g'] is True


def test_authors_model_type_and_attention_spelling(tmp_path, monkeypatch):
    """The authors' YAMLs say ``model_type: ESRModel`` and ``attn_type: Flex`` (run as sdpa on CPU)."""
    opt = parse(OPTIONS_DIR / 'test' / 'test_ESC_x4.yml', tmp_path, monkeypatch)
    opt.update(model_type='ESRModel')
    opt['network_g']['attn_type'] = 'Flex'
    opt['path']['pretrain_network_g'] = None
    model = build_model(opt)
    expected = 'flex' if model.device.type == 'cuda' else 'sdpa'
    assert type(model).__name__ == 'ESRModel' and model.net_g.attn_type == expected


# ---------------------------------------------------------------- esc_arch.options.checks

def test_options_check_looks_up_each_network_class_once(tmp_path, monkeypatch):
    from helpers import make_pairs, train_options

    from esc_arch.options import checks as options_check

    looked_up = []
    original = options_check.constructor_parameters
    monkeypatch.setattr(options_check, 'constructor_parameters', lambda cls: looked_up.append(cls) or original(cls))
    options = train_options(make_pairs(tmp_path / 'pairs'), total_iter=2)
    options_check.check_options(options)
    assert len(looked_up) == 1
    with pytest.raises(options_check.OptionsError, match='scale is 2 but network_g:upscaling_factor is 4'):
        options_check.check_options(dict(options, scale=2))


def test_test_options_ignore_resume_state_but_check_pretrained_weights(tmp_path):
    from helpers import TINY_ESC, make_pairs, paired_dataset

    from esc_arch.errors import OptionsError
    from esc_arch.options import check_options

    options = dict(name='check', model_type='SRModel', scale=4, num_gpu=0, network_g=dict(TINY_ESC),
                   datasets=dict(test_1=paired_dataset(make_pairs(tmp_path / 'pairs'), {})),
                   path=dict(resume_state=str(tmp_path / 'gone.state'), pretrain_network_g=str(tmp_path / 'gone.pth')),
                   val={})
    with pytest.raises(OptionsError, match='path:pretrain_network_g not found'):
        check_options(options, is_train=False)  # basicsr test never reads resume_state
    options['path']['pretrain_network_g'] = None
    check_options(options, is_train=False)


def test_auto_resume_checks_pretrained_weights_until_a_state_exists(tmp_path, monkeypatch, capsys):
    from helpers import make_pairs, train_options, write_yaml

    from esc_arch.cli import main
    from esc_arch.options import check_options, resumes_training

    monkeypatch.chdir(tmp_path)
    options = train_options(make_pairs(tmp_path / 'pairs'), total_iter=2)
    options['path']['pretrain_network_g'] = 'gone.pth'
    write_yaml(tmp_path / 'train.yml', options)
    # A first run: BasicSR starts from pretrain_network_g, which must exist.
    assert not resumes_training(options, auto_resume=True)
    assert main(['train', '-opt', 'train.yml', '--auto_resume']) == 2
    assert 'basicsr train: error: path:pretrain_network_g not found: gone.pth' in capsys.readouterr().err
    assert not (tmp_path / 'experiments').exists()

    states = tmp_path / 'experiments' / 'tiny_esc' / 'training_states'
    states.mkdir(parents=True)
    (states / 'notes.txt').touch()
    assert not resumes_training(options, auto_resume=True)
    (states / '4.state').touch()
    assert resumes_training(options, auto_resume=True) and not resumes_training(options, auto_resume=False)
    check_options(options, resuming=True)  # BasicSR loads the experiment's own networks instead
    assert resumes_training(dict(options, path=dict(options['path'], resume_state='x.state')), auto_resume=False)
