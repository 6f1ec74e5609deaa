"""What tools read from any network (ESC's or another BasicSR network): the bare module, its window, its scale.

The commands, the model and the profiler handle networks wrapped for training or speed
(``DataParallel``/``DistributedDataParallel``, ``torch.compile``, ``CompiledNetwork``)
and networks of other projects; these helpers are the one place that knows how to see through the
wrappers and which attribute names carry the window and the scale.
"""
import inspect

from torch import nn

__all__ = ['SCALE_ATTRIBUTES', 'bare_network', 'is_arbitrary_scale', 'network_scale', 'network_window']

SCALE_ATTRIBUTES = ('upscaling_factor', 'upscale')
"""The constructor argument (and attribute) that sets a network's scale: ESC's, then BasicSR's (SwinIR, ...).
The YAML key is the constructor argument's name; in the Python API the idea is called ``scale``."""


def bare_network(network: nn.Module) -> nn.Module:
    """``network`` without the wrappers around it (DataParallel/DDP, ``torch.compile``, ``CompiledNetwork``)."""
    wrappers = (nn.DataParallel, nn.parallel.DistributedDataParallel)
    while True:
        if isinstance(network, wrappers):
            network = network.module
        elif hasattr(network, '_orig_mod') and isinstance(network._orig_mod, nn.Module):  # torch.compile
            network = network._orig_mod
        elif type(network).__name__ == 'CompiledNetwork':
            network = network.network
        else:
            return network


def network_window(network: nn.Module) -> int:
    """The side of the windows the network's input is best padded to (1 for a network without windows).

    The network's own ``window_size`` (ESC's), else the largest ``window_size`` of its layers (BasicSR's
    SwinIR keeps it on its blocks only; its model class reads it from the options).
    """
    bare = bare_network(network)
    for modules in ([bare], list(bare.modules())):
        windows = [module.window_size for module in modules if _is_window(getattr(module, 'window_size', None))]
        if windows:
            return max(windows)
    return 1


def _is_window(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 1


def is_arbitrary_scale(network: nn.Module) -> bool:
    """Whether the network upscales by any factor: its forward takes pixel queries, ``forward(x, coord, cell)``
    (ESCLTE), and it has no scale of its own."""
    bare = bare_network(network)
    return 'coord' in inspect.signature(bare.forward).parameters and network_scale(bare) is None


def network_scale(network: nn.Module) -> float | None:
    """The network's fixed scale, or None for an arbitrary-scale network (or one that does not say)."""
    bare = bare_network(network)
    for name in SCALE_ATTRIBUTES:
        value = getattr(bare, name, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
    return None
