"""The authors' options files run unchanged but for paths and num_gpu: their names and keys are understood."""
import pytest
from helpers import TINY, image_folder, make_pairs, model_options  # noqa: E402

from esc_arch.cli import main
from esc_arch.models import ESCModel

from basicsr.models import build_model  # noqa: E402  (after esc_arch, which makes basicsr importable)
from basicsr.utils.registry import DATASET_REGISTRY, MODEL_REGISTRY  # noqa: E402

SCALE = 4
# The authors' network_g of ESC with the tiny sizes, and their Set5 x4 dataset (under its key in `datasets`).
AUTHORS_NETWORK = f"""network_g:
  type: ESC
  dim: {TINY['dim']}
  pdim: {TINY['pdim']}
  kernel_size: {TINY['kernel_size']}
  n_blocks: {TINY['n_blocks']}
  conv_blocks: {TINY['conv_blocks']}
  window_size: {TINY['window_size']}
  num_heads: {TINY['num_heads']}
  upscaling_factor: {SCALE}
  exp_ratio: 1.25
  attn_type: Flex"""


def authors_set5(val_root):
    return f"""    name: Set5
    type: PairedImageDataset
    dataroot_gt: {val_root}/HR  # changed
    dataroot_lq: {val_root}/LR  # changed
    filename_tmpl: '{{}}x4'
    io_backend:
      type: disk"""


def authors_train_options(hr_folder, val_root):
    """An options file written the way the authors write theirs (their model, dataset and key names), with a
    tiny network and a few iterations; the `# changed` lines are what a user changes (paths, num_gpu)."""
    return f"""
name: ESC_authors_style
model_type: ESRModel
scale: {SCALE}
num_gpu: 0  # changed
manual_seed: 0

datasets:
  train:
    name: DFLIP
    type: DownsampleImageDataset
    dataroot_gt: {hr_folder}  # changed
    meta_info_file: ~
    filename_tmpl: '{{}}'
    io_backend:
      type: disk
    gt_size: 32
    use_hflip: true
    use_rot: true
    use_shuffle: true
    num_worker_per_gpu: 0
    batch_size_per_gpu: 2
    dataset_enlarge_ratio: 1
    prefetch_mode: ~
  val:
{authors_set5(val_root)}

{AUTHORS_NETWORK}

path:
  pretrain_network_g: ~
  strict_load_g: true
  resume_state: ~

use_amp: true

train:
  ema_decay: 0.999
  gradient_clip: 1.0
  optim_g:
    type: AdamW
    lr: !!float 5e-4
    weight_decay: 0
    betas: [0.9, 0.9]
  scheduler:
    type: MultiStepLR
    milestones: [250000, 400000, 450000, 475000, 490000]
    gamma: 0.5
  total_iter: 3
  warmup_iter: -1
  pixel_opt:
    type: L1Loss
    loss_weight: 1.0
    reduction: mean

val:
  val_freq: 3
  save_img: false
  metrics:
    psnr:
      type: calculate_psnr
      crop_border: {SCALE}
      test_y_channel: true

logger:
  print_freq: 1
  save_checkpoint_freq: 3
  use_tb_logger: false
  wandb:
    project: ~
    resume_id: ~
"""


def authors_test_options(val_root, weights):
    return f"""
name: test_ESC_authors_style
model_type: ESRModel
scale: {SCALE}
num_gpu: 0  # changed
manual_seed: 0
datasets:
  test_1:
{authors_set5(val_root)}
{AUTHORS_NETWORK}
path:
  pretrain_network_g: {weights}  # changed
  param_key_g: params_ema
  strict_load_g: true
val:
  save_img: false
  suffix: ~
  metrics:
    psnr:
      type: calculate_psnr
      crop_border: {SCALE}
      test_y_channel: true
"""


def test_the_authors_names_are_registered():
    assert issubclass(MODEL_REGISTRY.get('ESRModel'), ESCModel)
    for name in ('RealHATMSEModel', 'RealHATGANModel'):  # their real-world models test with the same padding
        assert issubclass(MODEL_REGISTRY.get(name), ESCModel)
    assert DATASET_REGISTRY.get('RealESRGANDataset').__module__.startswith('esc_arch')


@pytest.mark.slow
def test_an_authors_style_options_file_trains_and_tests(tmp_path, monkeypatch, fresh_basicsr_logger):
    hr = image_folder(tmp_path / 'hr', [(40, 44), (48, 40), (36, 52)])
    val_root = make_pairs(tmp_path / 'val', count=2, size=24)
    (tmp_path / 'train.yml').write_text(authors_train_options(hr, val_root))
    monkeypatch.chdir(tmp_path)

    assert main(['train', '-opt', 'train.yml']) == 0
    experiment = tmp_path / 'experiments' / 'ESC_authors_style'
    log = next(experiment.glob('train_*.log')).read_text()
    assert "Mixed precision training: fp16 on cpu (the authors' use_amp" in log
    assert "Authors' option train:gradient_clip 1.0: not applied under use_amp" in log  # as in their ESRModel
    assert 'grad_norm:' not in log
    assert 'network_g:attn_type flex runs as sdpa on CPU' in log
    assert '# psnr:' in log  # validated at iteration 3
    weights = experiment / 'models' / 'net_g_3.pth'
    assert weights.is_file()

    (tmp_path / 'test.yml').write_text(authors_test_options(val_root, weights))
    assert main(['test', '-opt', 'test.yml']) == 0
    # BasicSR's logger is set up once per process: the test run logs into the training's file
    log = next(experiment.glob('train_*.log')).read_text()
    assert '@ test_ESC_authors_style iter' in log  # BasicSR's line for the test's PSNR


def test_flex_attention_trains_on_cpu_as_sdpa(tmp_path):
    network = dict(type='ESC', upscaling_factor=SCALE, attn_type='Flex', **TINY)
    model = build_model(model_options(tmp_path, network=network))
    assert model.net_g.attn_type == 'sdpa' and model.net_g_ema.attn_type == 'sdpa'
    assert model.opt['network_g']['attn_type'] == 'Flex'  # the options themselves are left as written
