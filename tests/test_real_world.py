"""ESC-Real training (paper Table 7): the degradation dataset, both model stages on CPU, their options, end to end."""
import re

import cv2
import numpy as np
import pytest
import torch
import yaml
from helpers import OPTIONS_DIR, TINY, basicsr_succeeds, committed_options, image_folder, weights, write_yaml  # noqa: E402

import esc_arch  # noqa: F401
from esc_arch.data import RealESRGANDataset  # noqa: E402
from esc_arch.errors import DatasetError, NonFiniteLossError, OptionsError  # noqa: E402
from esc_arch.models import ESCModel, ESCRealGANModel, ESCRealNetModel, RealHATGANModel, RealHATMSEModel  # noqa: E402
from esc_arch.runs.stop_signals import SaveOnStopMixin  # noqa: E402

from basicsr.data import build_dataset  # noqa: E402  (after esc_arch, which makes basicsr importable)
from basicsr.data.realesrgan_dataset import RealESRGANDataset as BasicSRRealESRGANDataset  # noqa: E402
from basicsr.models import build_model  # noqa: E402
from basicsr.utils.registry import DATASET_REGISTRY, MODEL_REGISTRY  # noqa: E402

TINY_REAL = dict(type='ESCReal', **TINY, upscaling_factor=4)


def model_options(tmp_path, stage, **train):
    """The generated options of ``stage`` (MSE or GAN) with a tiny ESC-Real, as BasicSR's parser leaves them."""
    opt = committed_options(f'train/train_ESC_Real_x4_{stage}.yml')
    for folder in ('models', 'training_states'):
        (tmp_path / folder).mkdir(exist_ok=True)
    opt.update(num_gpu=0, is_train=True, dist=False, rank=0, world_size=1, gt_size=32, queue_size=4,
               network_g=dict(TINY_REAL),
               path=dict(pretrain_network_g=None, param_key_g='params_ema', strict_load_g=True,
                         models=str(tmp_path / 'models'), training_states=str(tmp_path / 'training_states')))
    opt['train'].pop('perceptual_opt', None)  # VGG19 weights are downloaded: not in unit tests
    opt['train'].update(train)
    if stage == 'GAN':
        opt['network_d']['num_feat'] = 8
    return opt


def training_batch(size=160, batch=2):
    """What RealESRGANDataset yields, with pulse (no-blur) kernels. 160: the smallest second resize of the
    pipeline still leaves more pixels than a 21x21 kernel needs for reflect padding."""
    pulse = torch.zeros(batch, 21, 21)
    pulse[:, 10, 10] = 1
    return {'gt': torch.rand(batch, 3, size, size), 'kernel1': pulse, 'kernel2': pulse, 'sinc_kernel': pulse}


# ---------------------------------------------------------------- registration and structure

def test_authors_and_own_names_are_registered():
    assert MODEL_REGISTRY.get('ESCRealNetModel') is ESCRealNetModel
    assert MODEL_REGISTRY.get('ESCRealGANModel') is ESCRealGANModel
    assert MODEL_REGISTRY.get('RealHATMSEModel') is RealHATMSEModel and issubclass(RealHATMSEModel, ESCRealNetModel)
    assert MODEL_REGISTRY.get('RealHATGANModel') is RealHATGANModel and issubclass(RealHATGANModel, ESCRealGANModel)
    # The authors' dataset name builds ours; BasicSR's class stays reachable under its suffixed name.
    assert DATASET_REGISTRY.get('RealESRGANDataset') is RealESRGANDataset
    assert DATASET_REGISTRY.get('RealESRGANDataset_basicsr') is BasicSRRealESRGANDataset
    for model_class in (ESCRealNetModel, ESCRealGANModel):
        assert issubclass(model_class, SaveOnStopMixin)
        assert model_class.test is ESCModel.test  # test-time padding, tiling and self-ensemble: ESCModel's
        assert model_class.save_network is ESCModel.save_network  # atomic saves


# ---------------------------------------------------------------- dataset

def dataset_options(root, **extra):
    opt = committed_options('train/train_ESC_Real_x4_MSE.yml')['datasets']['train']
    opt.update(dataroot_gt=str(root), phase='train', scale=4, **extra)
    return opt


def test_dataset_scans_a_folder_and_its_subfolders(tmp_path):
    image_folder(tmp_path / 'hr', [(48, 64)])
    image_folder(tmp_path / 'hr' / 'ost', [(40, 40)], seed=3)
    (tmp_path / 'hr' / 'notes.txt').write_text('not an image')
    dataset = build_dataset(dataset_options(tmp_path / 'hr'))
    assert isinstance(dataset, RealESRGANDataset)
    assert dataset.paths == [str(tmp_path / 'hr' / 'img0.png'), str(tmp_path / 'hr' / 'ost' / 'img0.png')]
    item = dataset[1]
    assert item['gt'].shape == (3, 400, 400)  # BasicSR pads (reflect) or crops every image to 400
    assert {key: item[key].shape for key in ('kernel1', 'kernel2', 'sinc_kernel')} == {
        'kernel1': (21, 21), 'kernel2': (21, 21), 'sinc_kernel': (21, 21)}


def test_dataset_reads_a_meta_info_list_and_an_lmdb(tmp_path):
    from basicsr.utils.lmdb_util import make_lmdb_from_imgs

    folder = image_folder(tmp_path / 'hr', [(48, 64), (40, 40)])
    (tmp_path / 'meta.txt').write_text('img1.png (40,40,3)\n')
    assert build_dataset(dataset_options(folder, meta_info=str(tmp_path / 'meta.txt'))).paths == [
        str(folder / 'img1.png')]
    make_lmdb_from_imgs(str(folder), str(tmp_path / 'hr.lmdb'), ['img0.png', 'img1.png'], ['img0', 'img1'],
                        map_size=1 << 24)
    dataset = build_dataset(dataset_options(tmp_path / 'hr.lmdb', io_backend=dict(type='lmdb')))
    assert dataset.paths == ['img0', 'img1'] and dataset[0]['gt'].shape == (3, 400, 400)


def test_dataset_errors_name_the_folder_list_or_image(tmp_path):
    (tmp_path / 'empty').mkdir()
    with pytest.raises(DatasetError, match=f"dataset 'DF2K_OST': no images in {tmp_path / 'empty'}"):
        build_dataset(dataset_options(tmp_path / 'empty'))
    with pytest.raises(DatasetError, match='dataroot_gt folder not found: .*gone'):
        build_dataset(dataset_options(tmp_path / 'gone'))
    folder = image_folder(tmp_path / 'hr', [(48, 64)])
    with pytest.raises(DatasetError, match='cannot read the image list .*missing.txt'):
        build_dataset(dataset_options(folder, meta_info=str(tmp_path / 'missing.txt')))
    (tmp_path / 'plain.lmdb').mkdir()
    with pytest.raises(DatasetError, match='cannot read the image list .*plain.lmdb/meta_info.txt'):
        build_dataset(dataset_options(tmp_path / 'plain.lmdb', io_backend=dict(type='lmdb')))
    (folder / 'img1.png').write_bytes(b'\x89PNG\r\n\x1a\n truncated')
    dataset = build_dataset(dataset_options(folder))
    with pytest.raises(DatasetError, match=f'cannot read {folder / "img1.png"}: not a readable image'):
        dataset[1]


# ---------------------------------------------------------------- models

def test_stage_one_trains_on_cpu_with_adamw_and_its_queue(tmp_path):
    model = build_model(model_options(tmp_path, 'MSE'))
    assert type(model.optimizer_g) is torch.optim.AdamW and model.optimizer_g.param_groups[0]['betas'] == (0.9, 0.9)
    assert model.usm_sharpener.kernel.device.type == 'cpu'
    before, ema_before = weights(model.net_g), weights(model.net_g_ema)
    model.feed_data(training_batch())
    assert model.lq.shape == (2, 3, 8, 8) and model.gt.shape == (2, 3, 32, 32)
    assert model.queue_lr.device.type == 'cpu' and model.queue_ptr == 2
    model.optimize_parameters(1)
    assert np.isfinite(model.get_current_log()['l_pix'])
    assert any(not torch.equal(before[name], value) for name, value in model.net_g.state_dict().items())
    assert any(not torch.equal(ema_before[name], value) for name, value in model.net_g_ema.state_dict().items())
    model.feed_data(training_batch())
    model.feed_data(training_batch())  # the queue (4) is full: batches now come out of it
    assert model.queue_ptr == 4 and model.lq.shape == (2, 3, 8, 8)


def test_queue_size_must_be_a_multiple_of_the_batch(tmp_path):
    model = build_model(dict(model_options(tmp_path, 'MSE'), queue_size=5))
    with pytest.raises(OptionsError, match='queue_size 5 is not a multiple of the batch size per process 2'):
        model.feed_data(training_batch())


def test_stage_two_trains_generator_and_discriminator_with_any_optimizer(tmp_path):
    model = build_model(model_options(tmp_path, 'GAN', optim_d=dict(type='AdamW', lr=1e-4, weight_decay=0.01)))
    assert type(model.optimizer_g) is torch.optim.Adam and type(model.optimizer_d) is torch.optim.AdamW
    assert type(model.net_d).__name__ == 'UNetDiscriminatorSN'
    g_before, d_before = weights(model.net_g), weights(model.net_d)
    model.feed_data(training_batch())
    model.optimize_parameters(1)
    log = model.get_current_log()
    assert {'l_g_pix', 'l_g_gan', 'l_d_real', 'l_d_fake'} <= set(log) and all(np.isfinite(list(log.values())))
    assert any(not torch.equal(g_before[name], value) for name, value in model.net_g.state_dict().items())
    assert any(not torch.equal(d_before[name], value) for name, value in model.net_d.state_dict().items())

    # Training state: both optimizers, resumed by a new model.
    model.save(epoch=0, current_iter=1)
    assert {path.name for path in (tmp_path / 'models').iterdir()} == {'net_g_1.pth', 'net_d_1.pth'}
    state = torch.load(tmp_path / 'training_states' / '1.state', weights_only=True)
    assert len(state['optimizers']) == 2
    resumed = build_model(model_options(tmp_path, 'GAN', optim_d=dict(type='AdamW', lr=1e-4, weight_decay=0.01)))
    resumed.resume_training(state)
    assert resumed.optimizer_d.state_dict()['state'].keys() == model.optimizer_d.state_dict()['state'].keys()


def test_stage_two_skips_nonfinite_steps_then_stops(tmp_path):
    model = build_model(model_options(tmp_path, 'GAN', max_consecutive_nonfinite=2))
    nets = {'g': model.net_g, 'g_ema': model.net_g_ema, 'd': model.net_d}
    before = {label: {name: value.detach().clone() for name, value in net.named_parameters()}
              for label, net in nets.items()}  # not the buffers: spectral norm updates its own in every forward
    model.feed_data(training_batch())
    model.lq[0, 0, 0, 0] = float('nan')
    model.optimize_parameters(1)
    assert model.nonfinite_networks == ['generator', 'discriminator'] and model.nonfinite_in_a_row == 1
    for label, net in nets.items():
        assert all(torch.equal(before[label][name], value) for name, value in net.named_parameters()), label
    assert not model.optimizer_g.state and not model.optimizer_d.state  # Adam never stepped
    model.feed_data(training_batch())
    model.lq.fill_(float('nan'))
    with pytest.raises(NonFiniteLossError, match='2 training steps in a row had a non-finite generator and '
                       'discriminator gradient'):
        model.optimize_parameters(2)


def test_stage_two_trains_in_bf16_and_refuses_fp16(tmp_path):
    model = build_model(model_options(tmp_path, 'GAN', mixed_precision='bf16'))
    dtypes = []
    model.net_d.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    model.feed_data(training_batch())
    model.optimize_parameters(1)
    assert set(dtypes) == {torch.bfloat16} and all(np.isfinite(list(model.get_current_log().values())))
    assert all(parameter.dtype == torch.float32 for parameter in model.net_g.parameters())
    with pytest.raises(OptionsError, match='mixed_precision fp16 is not supported by the GAN stage'):
        build_model(model_options(tmp_path, 'GAN', mixed_precision='fp16'))


def test_validation_without_ground_truth_computes_niqe_after_training(tmp_path):
    from basicsr.data import build_dataloader

    model = build_model(dict(model_options(tmp_path, 'MSE'), val=dict(
        save_img=False, metrics=dict(niqe=dict(type='calculate_niqe', crop_border=0)))))
    model.feed_data(training_batch())
    model.optimize_parameters(1)
    image_folder(tmp_path / 'lq', [(48, 48)])
    loader_opt = dict(name='real', type='SingleImageDataset', dataroot_lq=str(tmp_path / 'lq'),
                      io_backend=dict(type='disk'), phase='val', scale=4)
    loader = build_dataloader(build_dataset(loader_opt), loader_opt, num_gpu=0, dist=False)
    model.nondist_validation(loader, current_iter=1, tb_logger=None, save_img=False)
    assert np.isfinite(model.metric_results['niqe']) and model.metric_results['niqe'] > 0
    assert not hasattr(model, 'gt')  # the training batch's ground truth was not scored against
    assert model.is_train  # the synthetic degradations are back on for training


# ---------------------------------------------------------------- options

def test_options_follow_the_authors_recipe():
    stage1 = committed_options('train/train_ESC_Real_x4_MSE.yml')
    stage2 = committed_options('train/train_ESC_Real_x4_GAN.yml')
    for opt in (stage1, stage2):
        data = opt['datasets']['train']
        assert data['type'] == 'RealESRGANDataset' and data['meta_info'] is None
        assert data['batch_size_per_gpu'] * 4 == 48 and data['use_hflip'] and not data['use_rot']
        assert data['final_sinc_prob'] == 0.8
        assert (opt['gt_size'], opt['queue_size'], opt['scale']) == (256, 180, 4)
        assert opt['network_g'] == dict(type='ESCReal', dim=64, pdim=16, n_blocks=10, window_size=32, num_heads=4,
                                        kernel_size=13, conv_blocks=5, exp_ratio=2.0, upscaling_factor=4)
        assert opt['train']['ema_decay'] == 0.999
    assert stage1['model_type'] == 'ESCRealNetModel' and stage1['gt_usm'] is True
    train = stage1['train']
    assert train['optim_g'] == dict(type='AdamW', lr=5e-4, weight_decay=0, betas=[0.9, 0.9])
    assert train['scheduler'] == dict(type='MultiStepLR', milestones=[100000], gamma=0.4)
    assert (train['total_iter'], train['warmup_iter'], train['pixel_opt']['type']) == (1000000, -1, 'L1Loss')

    assert stage2['model_type'] == 'ESCRealGANModel'
    assert stage2['path']['pretrain_network_g'] == 'experiments/train_ESC_Real_x4_MSE/models/net_g_latest.pth'
    assert stage2['path']['param_key_g'] == 'params_ema'
    assert stage2['network_d'] == dict(type='UNetDiscriminatorSN', num_in_ch=3, num_feat=64, skip_connection=True)
    train = stage2['train']
    for key in ('optim_g', 'optim_d'):
        assert train[key] == dict(type='Adam', lr=1e-4, weight_decay=0, betas=[0.9, 0.99])
    assert train['scheduler'] == dict(type='MultiStepLR', milestones=[400000], gamma=0.5)
    assert train['total_iter'] == 400000
    assert train['perceptual_opt']['layer_weights'] == dict(conv1_2=0.1, conv2_2=0.1, conv3_4=1, conv4_4=1, conv5_4=1)
    assert train['perceptual_opt']['criterion'] == 'l1' and train['perceptual_opt']['perceptual_weight'] == 1.0
    assert train['gan_opt']['gan_type'] == 'vanilla' and train['gan_opt']['loss_weight'] == 0.1


def test_x2_options_are_the_x4_recipe_at_x2_and_feed_the_x2_test_options():
    for stage in ('MSE', 'GAN'):
        x2 = committed_options(f'train/train_ESC_Real_x2_{stage}.yml')
        x4 = committed_options(f'train/train_ESC_Real_x4_{stage}.yml')
        assert (x2['scale'], x2['network_g']['upscaling_factor'], x2['name']) == (2, 2, f'train_ESC_Real_x2_{stage}')
        for key in ('scale', 'name', 'network_g', 'path'):
            x2.pop(key), x4.pop(key)
        assert x2 == x4
    assert committed_options('train/train_ESC_Real_x2_GAN.yml')['path']['pretrain_network_g'] == \
        'experiments/train_ESC_Real_x2_MSE/models/net_g_latest.pth'
    assert committed_options('test/test_ESC_Real_x2.yml')['path']['pretrain_network_g'] == \
        'experiments/train_ESC_Real_x2_GAN/models/net_g_latest.pth'


def test_test_options_save_images_and_compute_niqe():
    for path in sorted((OPTIONS_DIR / 'test').glob('test_ESC_Real_x*.yml')):
        opt = yaml.safe_load(path.read_text())
        assert {dataset['type'] for dataset in opt['datasets'].values()} == {'SingleImageDataset'}
        assert opt['val']['save_img'] is True
        assert opt['val']['metrics'] == {'niqe': {'type': 'calculate_niqe', 'crop_border': 0, 'better': 'lower'}}
        assert opt['path']['param_key_g'] == 'params_ema'


# ---------------------------------------------------------------- end to end

def cpu_demo(opt, hr_folder):
    """A generated ESC-Real training shrunk to a few CPU seconds: tiny network, 64-pixel crops, 2 iterations."""
    opt.update(num_gpu=0, gt_size=64, queue_size=4, network_g=dict(TINY_REAL))
    opt['datasets']['train'].update(dataroot_gt=str(hr_folder), gt_size=64, batch_size_per_gpu=2,
                                    num_worker_per_gpu=0)
    opt['train'].update(total_iter=2)
    opt['train'].pop('perceptual_opt', None)  # torchvision would download VGG19's weights
    opt['logger'].update(print_freq=1, save_checkpoint_freq=1, use_tb_logger=False)
    if 'network_d' in opt:
        opt['network_d']['num_feat'] = 8
    return opt


@pytest.mark.slow
def test_two_stage_training_then_test_without_ground_truth(tmp_path):
    hr = image_folder(tmp_path / 'hr', [(96, 128), (80, 80)])
    lq = image_folder(tmp_path / 'real_lq', [(64, 64)], seed=5)
    mse = cpu_demo(committed_options('train/train_ESC_Real_x4_MSE.yml'), hr)
    output = basicsr_succeeds(tmp_path, 'train', '-opt', write_yaml(tmp_path / 'mse.yml', mse))
    assert 'l_pix:' in output
    stage1 = tmp_path / 'experiments' / 'train_ESC_Real_x4_MSE' / 'models' / 'net_g_latest.pth'
    assert set(torch.load(stage1, weights_only=True)) == {'params', 'params_ema'}

    # Stage 2 starts from stage 1's EMA weights (the path in the generated options) and validates on
    # images without ground truth.
    gan = cpu_demo(committed_options('train/train_ESC_Real_x4_GAN.yml'), hr)
    gan['datasets']['val'] = dict(name='real_lq', type='SingleImageDataset', dataroot_lq=str(lq),
                                  io_backend=dict(type='disk'))
    gan['val'] = dict(val_freq=2, save_img=True, metrics=dict(niqe=dict(type='calculate_niqe', crop_border=0)))
    output = basicsr_succeeds(tmp_path, 'train', '-opt', write_yaml(tmp_path / 'gan.yml', gan))
    assert f'Loading ESCReal model from {stage1.relative_to(tmp_path)}, param key params_ema' in output
    assert 'l_g_gan:' in output and 'l_d_real:' in output
    assert re.search(r'# niqe: \d+\.\d+', output)
    stage2 = tmp_path / 'experiments' / 'train_ESC_Real_x4_GAN' / 'models'
    assert {'net_g_latest.pth', 'net_d_latest.pth'} <= {path.name for path in stage2.iterdir()}
    # --auto_resume continues with the discriminator and both optimizers of iteration 2.
    output = basicsr_succeeds(tmp_path, 'train', '-opt', str(tmp_path / 'gan.yml'), '--auto_resume',
                              '--force_yml', 'train:total_iter=3')
    assert 'Resuming training from epoch: ' in output and 'iter: 2.' in output
    assert f'Loading UNetDiscriminatorSN model from {stage2 / "net_d_2.pth"}, param key params' in output
    assert (stage2.parent / 'training_states' / '3.state').is_file()

    # basicsr test with the generated ESC-Real test options: images saved, NIQE computed.
    test = committed_options('test/test_ESC_Real_x4.yml')
    test.update(num_gpu=0, network_g=dict(TINY_REAL),
                datasets=dict(test_1=dict(test['datasets']['test_1'], name='real_lq', dataroot_lq=str(lq))))
    test['path']['pretrain_network_g'] = str(stage2 / 'net_g_latest.pth')
    output = basicsr_succeeds(tmp_path, 'test', '-opt', write_yaml(tmp_path / 'test.yml', test))
    assert re.search(r'# niqe: \d+\.\d+', output)
    saved = tmp_path / 'results' / 'test_ESC_Real_x4' / 'visualization' / 'real_lq' / 'img0_test_ESC_Real_x4.png'
    assert cv2.imread(str(saved)).shape == (256, 256, 3)
