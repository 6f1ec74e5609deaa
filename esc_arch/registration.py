"""When ESC's classes enter BasicSR's registries: as soon as basicsr is imported, not when esc_arch is.

The contract: after ``import esc_arch``, BasicSR finds ``type: ESC`` (and ESC's datasets, models and
the ``calculate_pyiqa`` metric), whichever of the two was imported first. ``import esc_arch`` itself
stays light (no torch, no basicsr), so that the ``basicsr`` command line and scripts that only need a
network start fast. The design:

* ``import esc_arch`` calls :func:`install`. If basicsr is imported already, ESC's classes are
  registered at once (:func:`register`); otherwise an import hook (:class:`BasicSRImportHook`, first on
  ``sys.meta_path``) waits for the import of basicsr (or of torchvision), wherever it comes from: before
  it runs, :func:`esc_arch.compat.apply_import_patches` (torchvision made importable where its compiled
  ops cannot load, then the ``'import'`` rows of :mod:`esc_arch.compat.table`: basicsr imports a
  torchvision module that newer torchvision lacks); after basicsr ran, :func:`register`.
* :func:`register` imports the modules that hold ESC's registered classes
  (:data:`REGISTERING_MODULES`); their ``@ARCH_REGISTRY.register()``-style decorators do the
  registering, once per process.
* Circular imports: basicsr is often imported by one of esc_arch's own modules (``from esc_arch import
  ESC`` imports ``esc_arch.archs``, whose classes are decorated with BasicSR's registry). While such a
  module is half-initialised, importing the others could ask it for a name it has not defined yet, so
  :func:`register` then waits (:func:`is_waiting`): the modules being imported register their own
  classes as they finish, and the rest are imported as soon as none of esc_arch's modules is
  half-imported any more, which is seen when a subpackage of esc_arch has been imported (importlib
  then sets it as an attribute of :mod:`esc_arch`, whose module type watches that), when any other
  import begins (the hook sees every import), or at the next call of :func:`register`
  (:func:`esc_arch.compat.apply_all`, the ``basicsr`` commands and the lazy names of :mod:`esc_arch`
  call it). Until then :func:`is_registered` is False.

The rejected alternative, registering on a registry miss, would patch BasicSR's ``Registry.get`` and
still leave ``'ESC' in ARCH_REGISTRY`` false until a lookup failed.
"""
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Sequence

__all__ = ['REGISTERING_MODULES', 'BasicSRImportHook', 'install', 'is_registered', 'is_waiting', 'register']

REGISTERING_MODULES = ('esc_arch.archs', 'esc_arch.data', 'esc_arch.metrics', 'esc_arch.models')
"""The modules whose import registers ESC's networks, datasets, metric and models in BasicSR's registries."""

_pending = False  # basicsr is imported; registration waits for esc_arch's modules being imported to finish
_basicsr_executed = False  # the hook saw basicsr's own code run to its end


def _initialising(name: str) -> bool:
    """Whether the module ``name`` is being executed now (importlib marks its spec so, as CPython's import does)."""
    spec = getattr(sys.modules.get(name), '__spec__', None)
    return bool(getattr(spec, '_initializing', False))


def _basicsr_ready() -> bool:
    return _basicsr_executed or ('basicsr' in sys.modules and not _initialising('basicsr'))


def is_registered() -> bool:
    """Whether every module of :data:`REGISTERING_MODULES` is imported completely (so its classes registered)."""
    return all(name in sys.modules and not _initialising(name) for name in REGISTERING_MODULES)


def is_waiting() -> bool:
    """Whether basicsr is imported and the registration waits for half-imported modules of esc_arch."""
    return _pending


def register() -> bool:
    """Register ESC's classes in BasicSR's registries now, if basicsr is imported and it is safe to.

    Returns:
        bool: Whether every class is registered now. False while basicsr is not imported (the hook
        registers them when it is), or while one of esc_arch's modules is half-imported (see the
        module docstring: registration then waits for it).
    """
    global _pending
    if not _basicsr_ready():
        return False
    # The package itself is half-imported when its last line calls install(): it defines nothing a module could miss
    if any(_initialising(name) for name in sys.modules if name.startswith('esc_arch.')):
        _pending = True
        return False
    _pending = False
    for name in REGISTERING_MODULES:
        importlib.import_module(name)
    return True


class _RegisteringLoader(importlib.abc.Loader):
    """basicsr's own loader, followed by :func:`register`."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        global _basicsr_executed
        module.__loader__ = module.__spec__.loader = self.loader  # basicsr keeps its own loader
        self.loader.exec_module(module)
        _basicsr_executed = True
        register()


class _ImportedLoader(importlib.abc.Loader):
    """Gives the import system a module imported already (by :func:`esc_arch.compat.apply_import_patches`)."""

    def __init__(self, module: types.ModuleType) -> None:
        self.module = module
        self.spec = module.__spec__

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return self.module

    def exec_module(self, module: types.ModuleType) -> None:
        module.__spec__ = self.spec  # the import system set the spec of this loader


class BasicSRImportHook(importlib.abc.MetaPathFinder):
    """A ``sys.meta_path`` finder that prepares the imports of torchvision and basicsr (see the module docstring).

    Before either is imported, :func:`esc_arch.compat.apply_import_patches` imports torchvision (made
    importable) and applies the ``'import'`` rows; torchvision is then handed over as imported, and
    basicsr's own loader runs, followed by :func:`register`. For any other import it finds nothing,
    and completes a registration that waited (:func:`register`).
    """

    def __init__(self) -> None:
        self.preparing = False

    def find_spec(self, name: str, path: Sequence[str] | None = None,
                  target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if _pending:
            register()
        if name not in ('basicsr', 'torchvision') or self.preparing:
            return None
        from esc_arch.compat import apply_import_patches

        self.preparing = True
        try:
            apply_import_patches()
        finally:
            self.preparing = False
        if name == 'torchvision':
            return importlib.util.spec_from_loader(name, _ImportedLoader(sys.modules[name]))
        return self._wrapped_spec(name, path, target)

    def _wrapped_spec(self, name: str, path: Sequence[str] | None,
                      target: types.ModuleType | None) -> importlib.machinery.ModuleSpec | None:
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, 'find_spec'):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _RegisteringLoader(spec.loader)
                return spec
        return None


_HOOK = BasicSRImportHook()


def install() -> None:
    """Register now if basicsr is imported, otherwise put the hook first on ``sys.meta_path`` (once)."""
    if _basicsr_ready():
        register()
    elif _HOOK not in sys.meta_path:
        sys.meta_path.insert(0, _HOOK)
