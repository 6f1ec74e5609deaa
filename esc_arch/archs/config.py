"""``network.config``: the options a network was built with, recorded once from its constructor's signature."""
import copy
import functools
import inspect
from collections.abc import Callable
from typing import Any

__all__ = ['RUN_TIME_OPTIONS', 'ConfigMixin', 'records_config']

RUN_TIME_OPTIONS = ('attn_type', )
"""Constructor arguments that choose how a network computes, not what it is: left out of its ``config``
(and not stored in its weights, so :func:`esc_arch.checkpoint.infer_network_config` leaves them out too)."""


def records_config(init: Callable) -> Callable:
    """Decorate a network's ``__init__`` so that the network gets a ``config`` property.

    ``config`` is the network's ``network_g`` options: ``type`` (the class name, as registered in
    BasicSR's ARCH_REGISTRY) and every constructor argument with its value, defaults included,
    less :data:`RUN_TIME_OPTIONS`; sequences are lists, as YAML gives them. Building the type with
    these options gives the same network, and their keys are the YAML keys. With subclasses, the
    outermost decorated constructor sets it.
    """
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self: object, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        init(self, *args, **kwargs)
        options = {name: list(value) if isinstance(value, tuple) else value
                   for name, value in list(bound.arguments.items())[1:] if name not in RUN_TIME_OPTIONS}
        self._config = {'type': type(self).__name__, **options}

    return wrapper


class ConfigMixin:
    """The ``config`` property of networks whose constructor is decorated with :func:`records_config`."""

    _config: dict

    @property
    def config(self) -> dict:
        """The ``network_g`` options this network was built with (a copy: changing it changes nothing)."""
        return copy.deepcopy(self._config)
