"""ESCModel: BasicSR's SRModel plus what ESC's recipe and large validation images need.

The model is assembled from parts, each in its own module: the training step (mixed precision, gradient
clipping, the non-finite guard: :mod:`esc_arch.models.training_step`), saving and resuming
(:mod:`esc_arch.models.training_state`), stop-on-signal (:mod:`esc_arch.runs.stop_signals`) and the
one test-time forward (:func:`esc_arch.inference.forward.forward_image`). Its options are declared once,
in :mod:`esc_arch.options.model_options`.
"""
from collections.abc import Iterable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from esc_arch.archs.introspection import bare_network
from esc_arch.checkpoint import adapt_state_dict, load_into_network, load_state_dict
from esc_arch.errors import CheckpointError, OptionsError
from esc_arch.inference.compilation import compile_network, compile_unavailable_reason
from esc_arch.inference.forward import forward_image
from esc_arch.models.training_state import TrainingStateMixin, save_atomically
from esc_arch.models.training_step import TrainingStepMixin
from esc_arch.options.model_options import option_value, options_reference
from esc_arch.options.values import check_model_options
from esc_arch.runs.progress import LoggedProgress, progress_choice
from esc_arch.runs.stop_signals import SaveOnStopMixin

from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger
from basicsr.utils.registry import MODEL_REGISTRY

__all__ = ['ESCModel', 'ESRModel', 'save_atomically']



@MODEL_REGISTRY.register()
class ESCModel(SaveOnStopMixin, TrainingStepMixin, TrainingStateMixin, SRModel):
    """Super-resolution model for ESC, built on BasicSR's ``SRModel`` (EMA, warm-up, schedulers,
    metrics and saving are SRModel's). Registered as ``ESCModel`` and as ``ESRModel``, the name in the
    authors' options files. Everything added is off unless its option is set, except the authors'
    test-time padding (``val.pad_to_window``) and the test progress (``val.pbar``).

    Options added (YAML keys; declared in :data:`esc_arch.options.model_options.MODEL_OPTIONS`, from which
    this list is generated):

    {options}

    Also: network checkpoints and training states are written atomically (temporary file, then rename), so a kill
    while saving leaves the previous files usable; a checkpoint of another scale loads into ESC/ESC-FP
    (``pretrain_network_g`` + ``param_key_g: params_ema``, ``strict_load_g: true`` or false), its
    ``to_img`` being resampled by the network; ``network_g.attn_type: flex`` runs as ``sdpa`` (the same
    attention) on CPU; distributed training also runs on CPU (gloo); checkpoints are read safely
    (:meth:`load_network`); under ``basicsr train`` a SIGINT/SIGTERM saves the state of the last finished
    iteration before stopping (:mod:`esc_arch.runs.stop_signals`).
    """

    def __init__(self, opt: dict) -> None:
        check_model_options(opt, is_train=bool(opt.get('is_train')))
        self._read_training_options(opt)
        super().__init__(opt)
        self._replace_flex_attention_on_cpu()
        compile_opt = option_value(opt, 'val', 'compile')
        if compile_opt and not self.is_train:
            self._compile_for_testing(compile_opt if isinstance(compile_opt, dict) else {})

    def _replace_flex_attention_on_cpu(self):
        """``attn_type: flex`` (the authors' options say ``Flex``) runs as ``sdpa`` on CPU: the same attention,
        where FlexAttention on CPU has no backward pass and compiles itself again for every image size."""
        if self.device.type != 'cpu':
            return
        bare_networks = [bare_network(net) for net in (self.net_g, getattr(self, 'net_g_ema', None)) if net]
        flex = [bare for bare in bare_networks if getattr(bare, 'attn_type', None) == 'flex']
        for bare in flex:
            bare.attn_type = 'sdpa'
        if flex:
            get_root_logger().info('network_g:attn_type flex runs as sdpa on CPU (the same attention; FlexAttention '
                                   'on CPU cannot train and compiles for every image size)')

    def _compile_for_testing(self, compile_options: dict | bool) -> None:
        """``val.compile``: test through ``torch.compile`` (eager, with a notice, where it is unavailable)."""
        logger = get_root_logger()
        if bare_network(self.net_g) is not self.net_g:
            logger.warning('val.compile: not compiling a network wrapped for several GPUs; testing eagerly')
            return
        self.net_g, _ = compile_network(self.net_g, log=logger.info, **compile_options)

    def print_network(self, net: nn.Module) -> None:
        """BasicSR's printout (class, parameters, structure), the structure only when training: the structure
        of a tested network is in its options, and a train-then-test run (``basicsr demo``) logs it once."""
        if self.is_train:
            super().print_network(net)
        else:
            bare = self.get_bare_model(net)
            get_root_logger().info(f'Network: {type(bare).__name__}, with parameters: '
                                   f'{sum(p.numel() for p in bare.parameters()):,d}')

    def nondist_validation(self, dataloader: DataLoader, current_iter: int, tb_logger: object | None,
                           save_img: bool) -> None:
        """SRModel's, with progress: ``val.pbar`` defaults to on when testing, and is a log line per image when
        stderr is not a terminal (:mod:`esc_arch.runs.progress`)."""
        val_opt = self.opt['val']
        bar, log_lines = progress_choice(val_opt, self.is_train)
        if log_lines:
            dataloader = LoggedProgress(dataloader, get_root_logger().info)
        had_pbar, saved_pbar = 'pbar' in val_opt, val_opt.get('pbar')
        val_opt['pbar'] = bar
        try:
            super().nondist_validation(dataloader, current_iter, tb_logger, save_img)
        finally:
            if had_pbar:
                val_opt['pbar'] = saved_pbar
            else:
                del val_opt['pbar']

    def model_to_device(self, net: nn.Module) -> nn.Module:
        if self.opt['dist'] and self.device.type == 'cpu':  # BasicSR pins DDP to a CUDA device
            return DistributedDataParallel(
                net.to(self.device), find_unused_parameters=self.opt.get('find_unused_parameters', False))
        return super().model_to_device(net)

    def init_training_settings(self) -> None:
        super().init_training_settings()
        self._make_grad_scaler()
        compile_opt = option_value(self.opt, 'train', 'compile')
        if compile_opt:
            compile_options = compile_opt if isinstance(compile_opt, dict) else {}
            # inductor, the default backend, needs a C++ compiler (CPU) or Triton (CUDA): without them the first
            # iteration would fail deep inside it
            unavailable = 'backend' not in compile_options and compile_unavailable_reason(self.device)
            if unavailable:
                get_root_logger().warning(f'train.compile: not compiling: {unavailable}; training eagerly')
            else:
                self.get_bare_model(self.net_g).compile(**compile_options)
                get_root_logger().info('train.compile: the network is compiled during the first training '
                                       'iteration (a minute or more on a CPU; the first iteration log line shows '
                                       'its time)')

    def get_optimizer(self, optim_type: str, params: Iterable, lr: float, **kwargs: object) -> torch.optim.Optimizer:
        optimizer_class = getattr(torch.optim, optim_type, None)
        if not (isinstance(optimizer_class, type) and issubclass(optimizer_class, torch.optim.Optimizer)):
            raise OptionsError(f'train.optim_g.type: {optim_type!r} is not a torch.optim optimizer (e.g. Adam, AdamW)')
        return optimizer_class(params, lr, **kwargs)

    def test(self) -> None:
        """The output for ``self.lq`` through :func:`~esc_arch.inference.forward.forward_image` with the ``val``
        options; by default the authors' protocol (window padding), scoring exactly as their ``ESRModel.test``."""
        net = self.net_g_ema if hasattr(self, 'net_g_ema') else self.net_g
        was_training = net.training
        net.eval()
        self.output = forward_image(net, self.lq, scale=self.opt['scale'], **self._forward_options())
        net.train(was_training)

    def _forward_options(self) -> dict:
        """The ``val`` options of :func:`forward_image`, defaults from their declaration."""
        return {argument: option_value(self.opt, 'val', key) for argument, key in (
            ('tile', 'tile_size'), ('tile_pad', 'tile_pad'), ('pad_to_window', 'pad_to_window'),
            ('self_ensemble', 'self_ensemble'))}

    def load_network(self, net: nn.Module, load_path: str, strict: bool = True,
                     param_key: str | None = 'params') -> None:
        """BasicSR's ``load_network``, reading the file with :mod:`esc_arch.checkpoint`: tensors only
        (``weights_only``; a checkpoint that would run code is refused), adapted to the network
        (:func:`~esc_arch.checkpoint.adapt_state_dict`: a ``to_img`` of another scale is resampled, and the
        log says so), and a strict load that does not fit the network raises
        :class:`~esc_arch.errors.CheckpointError` saying how it differs."""
        bare = self.get_bare_model(net)
        logger = get_root_logger()
        logger.info(f'Loading {bare.__class__.__name__} model from {load_path}, param key {param_key}.')
        state_dict = adapt_state_dict(load_state_dict(load_path, param_key), bare, notify=logger.info)
        self._print_different_keys_loading(bare, state_dict, strict)
        if strict:
            load_into_network(bare, state_dict, source=load_path)
            return
        try:
            bare.load_state_dict(state_dict, strict=False)
        except RuntimeError as error:  # strict=False skips missing/unexpected tensors, not mismatched shapes
            mismatch = next((line.strip() for line in str(error).splitlines() if 'size mismatch' in line),
                            ' '.join(str(error).split()))
            raise CheckpointError(f'{load_path} does not fit {bare.__class__.__name__} (strict_load_g: false): '
                                  f'{mismatch}') from None


if ESCModel.__doc__:  # None under python -OO
    ESCModel.__doc__ = ESCModel.__doc__.format(options=options_reference('ESCModel').replace('\n', '\n    '))


@MODEL_REGISTRY.register()
class ESRModel(ESCModel):
    """:class:`ESCModel` under the name the authors' options files use (``model_type: ESRModel``)."""
