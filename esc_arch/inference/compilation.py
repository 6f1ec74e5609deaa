"""``torch.compile`` for inference, falling back to eager execution wherever compiling is impossible.

Compilation happens at the first call of the network (and again for new input shapes; after the
second shape it compiles for dynamic shapes). Its cost is reported separately: a log line before the
first call, and one after it with its duration. Where compilation cannot work (no C++ compiler for
the CPU backend, no Triton for CUDA) or fails at the first call, the network runs eagerly and a
one-line notice says why; outputs are the same either way (to about 1e-5 in fp32).
"""
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from esc_arch.archs.esc_lte import ESCLTE

__all__ = ['CompiledNetwork', 'compile_network', 'compile_unavailable_reason']


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def compile_unavailable_reason(device: torch.device | str) -> str | None:
    """Why ``torch.compile``'s default backend (inductor) cannot work on ``device``; None when it can."""
    device = torch.device(device)
    try:
        from torch._inductor import cpp_builder
        from torch.utils._triton import has_triton
    except Exception as error:  # a torch build without inductor, or one that fails to import it
        return f'torch._inductor is unavailable ({type(error).__name__}: {error})'
    if device.type == 'cuda':
        return None if has_triton() else 'Triton is not installed (torch.compile needs it on CUDA)'
    try:
        cpp_builder.get_cpp_compiler()
    except Exception:
        return 'no C++ compiler was found (torch.compile needs one on the CPU; set CXX or install g++)'
    return None


class CompiledNetwork(nn.Module):
    """A network called through ``torch.compile``, that turns to eager execution if compiling fails.

    Attributes of the network (``upscaling_factor``, ``window_size``...) read through the wrapper; its
    weights are the network's (``network`` is its only submodule).

    Args:
        network (nn.Module): The network, in the mode and on the device it will run in.
        log (Callable[[str], None]): Receives the progress lines and the fallback notice.
        **compile_options: Arguments of ``torch.compile`` (``mode``, ``dynamic``, ``backend``...).
    """

    def __init__(self, network: nn.Module, log: Callable[[str], None] = _stderr, **compile_options: object) -> None:
        super().__init__()
        self.network = network
        self.log = log
        self.compiled = True
        self.first_call_seconds = None
        # Kept out of the submodules, so that the weights are not listed twice.
        object.__setattr__(self, '_compiled_forward', torch.compile(network, **compile_options))

    def forward(self, *args: object, **kwargs: object) -> object:
        if not self.compiled:
            return self.network(*args, **kwargs)
        first = self.first_call_seconds is None
        if first:
            self.log('Compiling the network with torch.compile (the first call takes longer)...')
        start = time.perf_counter()
        try:
            output = self._compiled_forward(*args, **kwargs)
        except Exception as error:
            # Run eagerly: if the input itself is at fault, the eager error is the one the user sees.
            output = self.network(*args, **kwargs)
            self.compiled = False
            reason = str(error).strip().splitlines()[0] if str(error).strip() else ''
            self.log(f'torch.compile failed ({type(error).__name__}: {reason[:200]}); running eagerly instead')
            return output
        if first:
            self.first_call_seconds = time.perf_counter() - start
            self.log(f'Compiled; the first call, compilation included, took {self.first_call_seconds:.1f} s')
        return output

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__('network'), name)


def compile_network(network: nn.Module, log: Callable[[str], None] = _stderr,
                    **compile_options: object) -> tuple[nn.Module, bool]:
    """Compile ``network`` for inference with ``torch.compile``, or keep it eager where that cannot work.

    Args:
        network (nn.Module): The network, already on its device and in eval mode (compile after moving).
        log (Callable[[str], None]): Receives the notice and progress lines. Default: print to stderr.
        **compile_options: Arguments of ``torch.compile``.

    Returns:
        tuple[nn.Module, bool]: A :class:`CompiledNetwork` and True, or ``network`` itself and False
        (with a one-line notice) where compilation is unavailable. A compiled network that fails to
        compile at its first call also runs eagerly from then on (with a notice).
    """
    if isinstance(network, ESCLTE):  # it upscales through ESCLTE.upscale's pixel queries, never through forward
        log('Not compiling: ESCLTE upscales through pixel queries, which torch.compile does not see; running eagerly')
        return network, False
    parameter = next(network.parameters(), None)
    device = parameter.device if parameter is not None else torch.device('cpu')
    reason = compile_unavailable_reason(device) if 'backend' not in compile_options else None
    if reason:
        log(f'Not compiling: {reason}; running eagerly')
        return network, False
    return CompiledNetwork(network, log, **compile_options), True
