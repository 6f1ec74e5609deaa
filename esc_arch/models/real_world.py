"""ESC-Real training: BasicSR's Real-ESRNet (stage 1) and Real-ESRGAN (stage 2) models with ESCModel's additions.

The degradations (blur, resize, noise, JPEG, final sinc; Real-ESRGAN's two-stage pipeline) and the
training-pair queue are BasicSR 1.4.2's, run on the model's device (BasicSR puts them on CUDA
unconditionally). Optimizers, EMA, test-time padding, tiling, safe and atomic checkpoints, resuming,
stop-on-signal and the non-finite-loss guard are :class:`~esc_arch.models.esc_model.ESCModel`'s.
"""
import math
from functools import partial

import torch

from esc_arch.errors import OptionsError

from basicsr.models.realesrgan_model import RealESRGANModel
from basicsr.models.realesrnet_model import RealESRNetModel
from basicsr.utils import DiffJPEG, USMSharp
from basicsr.utils.registry import MODEL_REGISTRY

from .esc_model import ESCModel

__all__ = ['ESCRealNetModel', 'ESCRealGANModel', 'RealHATMSEModel', 'RealHATGANModel']

_BASICSR_REAL_MODELS = (RealESRNetModel, RealESRGANModel)


class ContiguousDiffJPEG(DiffJPEG):
    """BasicSR's JPEG simulator, returning a contiguous tensor.

    Its output has channels-last strides; BasicSR's ``filter2D`` (the second blur) reshapes its input
    with ``view``, which current torch refuses for such a tensor.
    """

    def forward(self, x: torch.Tensor, quality: torch.Tensor | float) -> torch.Tensor:
        return super().forward(x, quality).contiguous()


class DegradationOnModelDeviceMixin:
    """Runs BasicSR's Real-ESRNet/Real-ESRGAN data synthesis on the model's device (CPU or CUDA).

    Place it right before ``RealESRNetModel`` or ``RealESRGANModel`` in the bases. Also: a
    ``queue_size`` that is not a multiple of the batch is an :class:`OptionsError`, and validation
    images without ground truth (``SingleImageDataset``) are not paired with the last training batch.
    """

    def __init__(self, opt: dict) -> None:
        # BasicSR's Real-ESRNet/Real-ESRGAN __init__ only adds these three attributes, moving two of them to
        # CUDA: run the __init__ after it in the MRO instead, and keep them on self.device.
        basicsr_class = next(cls for cls in type(self).__mro__ if cls in _BASICSR_REAL_MODELS)
        super(basicsr_class, self).__init__(opt)
        self.jpeger = ContiguousDiffJPEG(differentiable=False).to(self.device)
        self.usm_sharpener = USMSharp().to(self.device)
        self.queue_size = opt.get('queue_size', 180)

    @torch.no_grad()
    def feed_data(self, data: dict) -> None:
        if self.is_train and 'gt' in data and not hasattr(self, 'queue_lr'):
            self._allocate_pair_queue(data['gt'])
        super().feed_data(data)
        if 'gt' not in data:  # an image without ground truth: drop the last training batch's
            for name in ('gt', 'gt_usm'):
                self.__dict__.pop(name, None)

    def _allocate_pair_queue(self, gt: torch.Tensor) -> None:
        """The training-pair queue, on the model's device: BasicSR's queue code allocates it on CUDA on first
        use unless it exists; its shapes are those of BasicSR's crops (``gt_size``, ``gt_size // scale``)."""
        batch_size, channels = gt.shape[:2]
        if self.queue_size % batch_size:
            raise OptionsError(f'queue_size {self.queue_size} is not a multiple of the batch size per process '
                               f'{batch_size} (datasets:train:batch_size_per_gpu)')
        gt_size = self.opt['gt_size']
        lq_size = gt_size // self.opt['scale']
        self.queue_lr = torch.zeros(self.queue_size, channels, lq_size, lq_size, device=self.device)
        self.queue_gt = torch.zeros(self.queue_size, channels, gt_size, gt_size, device=self.device)
        self.queue_ptr = 0


@MODEL_REGISTRY.register()
class ESCRealNetModel(ESCModel, DegradationOnModelDeviceMixin, RealESRNetModel):
    """Stage 1 of ESC-Real (paper Table 7): BasicSR's ``RealESRNetModel`` (degradations made on the fly,
    training-pair queue, pixel loss only) with everything :class:`ESCModel` adds, on CPU or CUDA.

    Also registered as ``RealHATMSEModel``, the authors' name. Options are Real-ESRNet's (top-level
    degradation keys such as ``resize_prob``, ``jpeg_range2``, ``gt_usm``, ``queue_size``, ``gt_size``)
    and ESCModel's (``train.optim_g.type`` any ``torch.optim`` class, ``mixed_precision``,
    ``clip_grad_norm``, ``max_consecutive_nonfinite``, ``val.tile_size``, ``val.pad_to_window``...),
    except the authors' ``use_amp`` and ``train.gradient_clip``, which their real-world models do not
    read either (logged as ignored). Validation and ``basicsr test`` feed the LR images as they are (no
    synthetic degradation).
    """
    reads_authors_keys = False


@MODEL_REGISTRY.register()
class ESCRealGANModel(ESCModel, DegradationOnModelDeviceMixin, RealESRGANModel):
    """Stage 2 of ESC-Real: BasicSR's ``RealESRGANModel`` (L1 + perceptual + GAN losses against the
    sharpened ground truth, a ``network_d`` such as ``UNetDiscriminatorSN``) with :class:`ESCModel`'s
    additions, on CPU or CUDA.

    Also registered as ``RealHATGANModel``, the authors' name. ``train.optim_g`` and ``train.optim_d``
    may name any ``torch.optim`` class. The non-finite guard works on gradients here: a network whose
    gradients are not finite (a NaN/inf loss gives such gradients) skips its optimizer step, and the EMA
    is not updated when the generator's step is skipped; after ``train.max_consecutive_nonfinite``
    (default 10) such iterations in a row training stops with
    :class:`~esc_arch.errors.NonFiniteLossError`. ``train.clip_grad_norm`` clips both networks'
    gradients. ``train.mixed_precision: bf16`` runs the whole step under autocast; ``fp16`` is refused
    (it needs loss scaling, which this stage does not do). The authors' ``use_amp`` and
    ``train.gradient_clip`` are ignored (logged), as by their ``RealHATGANModel``.
    """
    reads_authors_keys = False

    def __init__(self, opt: dict) -> None:
        if (opt.get('train') or {}).get('mixed_precision') == 'fp16':
            raise OptionsError('train:mixed_precision fp16 is not supported by the GAN stage (ESCRealGANModel), '
                               'which has no loss scaling: use bf16 or ~')
        self.nonfinite_networks = []  # networks whose step was skipped in the current iteration
        super().__init__(opt)

    def init_training_settings(self) -> None:
        super().init_training_settings()
        for label, optimizer in (('generator', self.optimizer_g), ('discriminator', self.optimizer_d)):
            optimizer.register_step_pre_hook(partial(self._drop_nonfinite_gradients, label))

    def optimize_parameters(self, current_iter: int) -> None:
        self.nonfinite_networks = []
        # ESCModel's optimize_parameters trains net_g alone. BasicSR's backward passes run inside this
        # autocast too: their operations keep the dtypes of the forward ones.
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            RealESRGANModel.optimize_parameters(self, current_iter)
        if self.nonfinite_networks:
            self._skip_step(current_iter, f'{" and ".join(self.nonfinite_networks)} gradient')
        else:
            self.nonfinite_in_a_row = 0

    def model_ema(self, decay: float = 0.999) -> None:
        if 'generator' not in self.nonfinite_networks:
            super().model_ema(decay)

    def _drop_nonfinite_gradients(self, label: str, optimizer: torch.optim.Optimizer, args: tuple,
                                  kwargs: dict) -> None:
        """Optimizer step pre-hook: clip the gradients if asked; if they are not finite, remove them, which
        makes the step leave the weights and the optimizer state as they are."""
        parameters = [p for group in optimizer.param_groups for p in group['params'] if p.grad is not None]
        if not parameters:
            return
        max_norm = self.opt['train'].get('clip_grad_norm')
        if max_norm:
            norm = torch.nn.utils.clip_grad_norm_(parameters, max_norm)
        else:
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in parameters]))
        if not math.isfinite(norm.item()):
            optimizer.zero_grad(set_to_none=True)
            self.nonfinite_networks.append(label)


@MODEL_REGISTRY.register()
class RealHATMSEModel(ESCRealNetModel):
    """:class:`ESCRealNetModel` under the authors' name (``model_type: RealHATMSEModel``)."""


@MODEL_REGISTRY.register()
class RealHATGANModel(ESCRealGANModel):
    """:class:`ESCRealGANModel` under the authors' name (``model_type: RealHATGANModel``)."""
