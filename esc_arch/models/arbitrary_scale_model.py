"""Arbitrary-scale SR (ESC+LTE) in BasicSR: training on sampled pixels, evaluation of whole images at any scale."""
import math
from os import path as osp

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from esc_arch.errors import DatasetError, OptionsError
from esc_arch.inference.forward import forward_image
from esc_arch.models.esc_model import ESCModel
from esc_arch.options.model_options import option_value, options_reference

from basicsr.metrics import calculate_metric
from basicsr.utils import imwrite, tensor2img
from basicsr.utils.registry import METRIC_REGISTRY, MODEL_REGISTRY

__all__ = ['ArbitraryScaleModel', 'LUMA_COEFFICIENTS', 'calculate_lte_psnr', 'evaluation_shave']

LUMA_COEFFICIENTS = (65.738 / 256, 129.057 / 256, 25.064 / 256)
"""RGB -> luma weights the LIIF/LTE evaluation applies to the difference of two images (no offset)."""
DIV2K_EXTRA_SHAVE = 6
PROTOCOLS = ('benchmark', 'div2k')


def evaluation_shave(scale: float, protocol: str = 'benchmark') -> int:
    """Border pixels left out of the PSNR: ``scale`` (benchmarks) or ``scale + 6`` (DIV2K), rounded up."""
    if protocol not in PROTOCOLS:
        raise OptionsError(f'LTE PSNR protocol must be one of {", ".join(PROTOCOLS)}; got {protocol!r}')
    return math.ceil(scale - 1e-9) + (DIV2K_EXTRA_SHAVE if protocol == 'div2k' else 0)


@METRIC_REGISTRY.register()
def calculate_lte_psnr(sr: Tensor, gt: Tensor, scale: float, protocol: str = 'benchmark') -> float:
    """PSNR of the arbitrary-scale evaluation (LIIF/LTE's ``calc_psnr``) on unrounded outputs.

    ``benchmark``: the difference is converted to luma with :data:`LUMA_COEFFICIENTS` and a border
    of ``scale`` pixels is shaved; ``div2k``: RGB, border ``scale + 6``. Fractional scales shave
    ``ceil(scale)``.

    Args:
        sr (Tensor): ``(B, 3, H, W)`` output in [0, 1] (clamped, not rounded).
        gt (Tensor): ``(B, 3, H, W)`` reference in [0, 1].
        scale (float): The evaluated scale.
        protocol (str): ``benchmark`` or ``div2k``. Default: ``benchmark``.

    Returns:
        float: PSNR in dB.
    """
    shave = evaluation_shave(scale, protocol)
    diff = sr.float() - gt.float()
    if protocol == 'benchmark':
        diff = (diff * diff.new_tensor(LUMA_COEFFICIENTS).view(1, 3, 1, 1)).sum(dim=1)
    valid = diff[..., shave:-shave, shave:-shave]
    if not valid.numel():
        raise DatasetError(f'an image of {gt.shape[-1]}x{gt.shape[-2]} pixels has nothing left after shaving '
                           f'{shave} border pixels (scale {scale})')
    return float(-10 * torch.log10(valid.pow(2).mean()))


@MODEL_REGISTRY.register()
class ArbitraryScaleModel(ESCModel):
    """Model for arbitrary-scale networks (``ESCLTE``) on :class:`~esc_arch.data.ArbitraryScaleDataset` samples.

    Optimizer, schedulers, EMA, losses, non-finite-step handling and saving are :class:`ESCModel`'s;
    the network is called as ``net(lq, coord, cell)`` in training (targets are sampled pixels), and
    validation/testing upscale whole images with ``net.upscale`` to the GT size (or to
    ``round(h * scale)`` without GT), at the dataset's ``scale`` (the top-level ``scale`` otherwise).

    The test-time forward is :func:`~esc_arch.inference.forward.forward_image` (no window padding, as
    the authors evaluate; ``val.tile_size``/``tile_pad``/``self_ensemble`` as for ESCModel). Validation
    metrics: ``metrics.NAME.type: calculate_lte_psnr`` (``protocol: benchmark`` or ``div2k``) is the
    authors' PSNR on the unrounded output (:func:`calculate_lte_psnr`); BasicSR's own metrics
    (``calculate_psnr``, ``calculate_ssim``) work too, on the 8-bit images. Options (declared in
    :mod:`esc_arch.options.model_options`), ESCModel's and:

    {options}
    """

    def feed_data(self, data: dict) -> None:
        self.lq = data['lq'].to(self.device)
        self.coord = data['coord'].to(self.device) if 'coord' in data else None
        self.cell = data['cell'].to(self.device) if 'cell' in data else None
        if 'gt' in data:
            self.gt = data['gt'].to(self.device)
        self.eval_scale = float(data['scale'].flatten()[0]) if 'scale' in data else float(self.opt['scale'])

    def training_forward(self) -> Tensor:
        return self.net_g(self.lq, self.coord, self.cell)

    def test(self) -> None:
        """Whole images at ``eval_scale``, to the GT's size when there is one (the authors crop the HR)."""
        net = self.net_g_ema if hasattr(self, 'net_g_ema') else self.net_g
        was_training = net.training
        net.eval()
        gt = getattr(self, 'gt', None)
        out_size = tuple(gt.shape[-2:]) if gt is not None and gt.dim() == 4 else None
        self.output = forward_image(net, self.lq, scale=self.eval_scale, out_size=out_size,
                                    query_chunk=option_value(self.opt, 'val', 'query_chunk'),
                                    clip_cell=option_value(self.opt, 'val', 'clip_cell'), **self._forward_options())
        net.train(was_training)

    def nondist_validation(self, dataloader: DataLoader, current_iter: int, tb_logger: object | None,
                           save_img: bool) -> None:
        dataset_name = dataloader.dataset.opt['name']
        metrics = (self.opt.get('val') or {}).get('metrics') or {}
        if metrics:
            self._initialize_best_metric_results(dataset_name)
        self.metric_results = {name: 0.0 for name in metrics}
        count = 0
        for count, val_data in enumerate(dataloader, 1):
            self.feed_data(val_data)
            self.test()
            for name, metric_opt in metrics.items():
                self.metric_results[name] += self._metric(metric_opt)
            if save_img:
                image_name = osp.splitext(osp.basename(val_data['lq_path'][0]))[0]
                path = self._image_path(image_name, dataset_name, current_iter)
                imwrite(tensor2img(self.output.detach().cpu()), path)
            del self.lq, self.output
            if hasattr(self, 'gt'):
                del self.gt
        if metrics and count:
            for name in metrics:
                self.metric_results[name] /= count
                self._update_best_metric_result(dataset_name, name, self.metric_results[name], current_iter)
            self._log_validation_metric_values(current_iter, dataset_name, tb_logger)

    def _metric(self, metric_opt: dict) -> float:
        """One metric of the current output: tensors for :func:`calculate_lte_psnr`, 8-bit images otherwise."""
        metric_opt = dict(metric_opt)
        if metric_opt.get('type') == 'calculate_lte_psnr':
            metric_opt.pop('type')
            metric_opt.pop('better', None)  # BasicSR's key for best-result tracking, not an argument
            return calculate_lte_psnr(self.output, self.gt, metric_opt.pop('scale', self.eval_scale), **metric_opt)
        images = {'img': tensor2img(self.output.detach().cpu()), 'img2': tensor2img(self.gt.detach().cpu())}
        return calculate_metric(images, metric_opt)

    def _image_path(self, image_name: str, dataset_name: str, current_iter: int) -> str:
        if self.opt['is_train']:
            return osp.join(self.opt['path']['visualization'], image_name, f'{image_name}_{current_iter}.png')
        suffix = self.opt['val'].get('suffix') or self.opt['name']
        return osp.join(self.opt['path']['visualization'], dataset_name, f'{image_name}_{suffix}.png')


if ArbitraryScaleModel.__doc__:  # None under python -OO
    ArbitraryScaleModel.__doc__ = ArbitraryScaleModel.__doc__.format(
        options=options_reference('ArbitraryScaleModel').replace('\n', '\n    '))
