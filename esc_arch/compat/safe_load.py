"""Every ``torch.load`` in a run reads tensors and plain containers only, whoever calls it and however.

basicsr 1.4.2 loads files with ``torch.load`` and no ``weights_only``: ``BaseModel.load_network``
(``path:pretrain_network_g`` of ``SRModel`` and the other BasicSR models) and the networks that load a
file in their constructor, reachable from any options file: ``SpyNet`` (``load_path``), ``BasicVSR``
and ``IconVSR`` (``spynet_path``), ``TOFlow`` (``load_path``), ``DFDNet`` (``dict_path``), ``VGGFeatureExtractor``
(its pretrained file) and the FID ``InceptionV3`` (also through ``torch.hub``, which passes
``weights_only=False``). torch 2.6 and later default to ``weights_only=True``, but
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` turns that default off, and earlier versions load any pickle.

The replacement, :func:`weights_only_load`, passes ``weights_only=True`` whatever the caller gave:
torch ignores ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` for calls that set it. A caller that brings its
own unpickler (``pickle_module``, e.g. spandrel's restricted one) keeps it; ``pickle`` itself is
dropped. torch before 2.6 is not accepted (setup.py, and the patch's guard): its ``weights_only``
loader could still be made to run code (CVE-2025-32434).
"""
import functools
import os
import pickle
import re
from collections.abc import Callable
from typing import Any

from esc_arch.errors import CheckpointError

__all__ = ['RefusedPickleError', 'refused_global', 'weights_only_load']


class RefusedPickleError(CheckpointError, pickle.UnpicklingError):
    """A file refused because loading it would run code: a one-line :class:`~esc_arch.errors.CheckpointError`
    that callers handling ``torch.load``'s own ``UnpicklingError`` (BasicSR's, esc_arch.checkpoint) still catch."""


def refused_global(error: BaseException) -> str | None:
    """What a ``weights_only`` load refused (e.g. ``'posix.system'``) for an intact pickle that would run
    code, else None (a damaged file, or another error)."""
    found = re.search(r'GLOBAL (\S+)', str(error)) or re.search(r'Unsupported global: (\S+)', str(error))
    return found[1] if found else None


def weights_only_load(original: Callable) -> Callable:
    """Wrap ``torch.load`` so that it always loads with ``weights_only=True``."""

    @functools.wraps(original)
    def load(f: Any, map_location: Any = None, pickle_module: Any = None, *, weights_only: bool | None = None,
             **kwargs: Any) -> Any:
        if pickle_module is not None and pickle_module is not pickle:
            # The caller's own restricted unpickler (spandrel's): torch refuses weights_only with it.
            return original(f, map_location, pickle_module, weights_only=weights_only, **kwargs)
        try:
            return original(f, map_location, weights_only=True, **kwargs)
        except pickle.UnpicklingError as error:
            refused = refused_global(error)
            if refused is None:
                raise  # a damaged file: the caller's own handling applies
            name = os.fspath(f) if isinstance(f, (str, os.PathLike)) else 'a file object'
            raise RefusedPickleError(f'{name} was refused: loading it would run code (its pickle calls GLOBAL '
                                     f'{refused} ); only tensors and plain containers are loaded') from None

    return load
