"""spandrel support: ``add_to_spandrel()`` teaches spandrel to load ESC, ESC-FP and ESC-Real checkpoints.

spandrel is the model loader of chaiNNer, ComfyUI and other image tools. After the call,
``spandrel.ModelLoader().load_from_file('ESC_x4.pth')`` detects the network type and every
hyperparameter from the state dict's keys and shapes and returns an ``ImageModelDescriptor``.
Needs the optional extra: ``pip install spandrel``.
"""
import torch
from spandrel import MAIN_REGISTRY, Architecture, ArchRegistry, ArchSupport, ImageModelDescriptor
from spandrel.util import KeyCondition
from torch import nn

from ..archs import ESC, ESCFP, ESCReal, build_network
from ..checkpoint import adapt_state_dict, infer_network_config, matching_preset

_BLOCK_KEYS = ('proj.weight', 'blocks.0.attn.relative_position_bias', 'blocks.0.attn.to_qkv.weight',
               'blocks.0.convffns.0.proj.weight', 'last.weight')


class ESCFamilyArch(Architecture):
    """spandrel architecture for one ESC network class, detected by its distinctive keys.

    Args:
        network_class (type): :class:`ESC`, :class:`ESCFP` or :class:`ESCReal`.
        distinctive_keys (tuple[str | KeyCondition]): Keys only this class has (besides the shared block keys).
    """

    def __init__(self, network_class: type[nn.Module], distinctive_keys: tuple[str | KeyCondition, ...]) -> None:
        super().__init__(id=network_class.__name__, detect=KeyCondition.has_all(*_BLOCK_KEYS, *distinctive_keys))
        self.network_class = network_class

    def load(self, state_dict: dict[str, torch.Tensor]) -> ImageModelDescriptor:
        config = infer_network_config(state_dict)
        network = build_network(config)
        network.load_state_dict(adapt_state_dict(state_dict, network))
        preset = matching_preset(config)
        tags = [f'{config["dim"]}dim', f'{config["n_blocks"]}nb', f'{config["window_size"]}ws']
        return ImageModelDescriptor(
            network,
            state_dict,
            architecture=self,
            purpose='SR' if config['upscaling_factor'] > 1 else 'Restoration',
            tags=[preset, *tags] if preset else tags,
            # fp16 outputs stay within 1e-2 of fp32, bf16 within 5e-2 (tests/test_spandrel.py)
            supports_half=True,
            supports_bfloat16=True,
            scale=config['upscaling_factor'],
            input_channels=3,
            output_channels=3,
            # any size: the networks pad to window multiples themselves (size_requirements left empty)
        )


ARCHITECTURES = (
    ESCFamilyArch(ESC, ('plk_filter', 'to_img.weight', 'blocks.0.pconvs.0.plk.dwc_proj.3.weight')),
    ESCFamilyArch(ESCFP, ('lk_channel', 'lk_spatial', 'ln_last.weight', 'to_img.weight')),
    # ESC-Real's upsampler: to_img.0 at x2, to_img.8 at x4 (see esc_arch.archs.heads.real_upsampler)
    ESCFamilyArch(ESCReal, ('plk_filter', 'skip.0.weight', KeyCondition.has_any('to_img.0.weight', 'to_img.8.weight'))),
)


def add_to_spandrel(registry: ArchRegistry = MAIN_REGISTRY) -> list[ArchSupport]:
    """Register ESC, ESCFP and ESCReal in a spandrel registry (spandrel's main one by default).

    Calling it again does nothing.

    Args:
        registry (spandrel.ArchRegistry): Where to add them. Default: ``spandrel.MAIN_REGISTRY``.

    Returns:
        list[ArchSupport]: The entries added by this call.
    """
    return registry.add(*(ArchSupport.from_architecture(arch) for arch in ARCHITECTURES), ignore_duplicates=True)
