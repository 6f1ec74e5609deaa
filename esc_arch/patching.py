"""One mechanism for every replacement of another library's object: declare a :class:`Patch`, apply, undo.

The patches themselves are declared in one table, :mod:`esc_arch.compat.table`. A patch names what it
replaces as ``'module:attribute.path'`` (an attribute, however deep) or
``'module:attribute.path[key]'`` (an item of a mapping, e.g. ``'sys:modules[name]'`` or a registry's
``_obj_map[name]``). :func:`apply` records the original object and puts the replacement in place;
:func:`undo` puts the original back (or removes the attribute/item when there was none). Applying
an applied patch, or undoing one that is not applied, does nothing. :func:`patched` applies patches
for the duration of a ``with`` block. Several patches may replace one target, each wrapping the one
before: they are undone in the reverse order (:func:`undo` refuses otherwise).

Each patch carries a version guard (``checked``, e.g. ``'basicsr==1.4.2, torch>=2.6'``): the versions
of the libraries it was checked against. On any other installed version :func:`apply` refuses with a
:class:`~esc_arch.errors.CompatibilityError` (or, for a patch declared ``unchecked='skip'``, leaves the
target alone with a warning), instead of replacing code it was never checked with.
"""
import contextlib
import dataclasses
import importlib
import importlib.metadata
import re
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from esc_arch.errors import CompatibilityError

__all__ = ['MISSING', 'Patch', 'apply', 'installed_version', 'is_applied', 'original', 'patched', 'replaced_by', 'undo',
           'unchecked_versions']

MISSING = object()
"""The "original" of a patch whose target did not exist (the patch adds it; undoing removes it)."""

_TARGET = re.compile(r'(?P<module>[\w.]+):(?P<path>\w+(?:\.\w+)*)(?:\[(?P<key>[^\]]+)\])?')
_REQUIREMENT = re.compile(r'(?P<library>[\w-]+)\s*(?P<operator>==|>=)\s*(?P<version>\d+(?:\.\d+)*)')
_OBJECT = re.compile(r'[\w.]+:\w+(?:\.\w+)*')


def _always(original: Any) -> bool:
    return True


def _resolve(name: str) -> Any:
    """The object named ``'module:attribute.path'``."""
    module, path = name.split(':')
    found = importlib.import_module(module)
    for attribute in path.split('.'):
        found = getattr(found, attribute)
    return found


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.match(r'\d+(?:\.\d+)*', text).group().split('.'))


@dataclasses.dataclass(frozen=True)
class Patch:
    """What one patch replaces, why, when, and against which versions it was checked; see :func:`apply`.

    Args:
        name (str): Short unique name, e.g. ``'resume-without-cuda'``.
        target (str): ``'module:attribute.path'`` or ``'module:attribute.path[key]'`` (mapping item).
        replacement (Callable[[Any], Any] | str): Builds the object to put in place from the original
            one (:data:`MISSING` when the target does not exist). A string ``'module:name'`` names such
            a builder, imported only when the patch is applied (so that a table of patches imports
            nothing of the modules that implement them).
        reason (str): The failure or risk it addresses, in one sentence.
        checked (str): The versions it was checked against, ``'library==X.Y.Z'`` or ``'library>=X.Y'``
            separated by commas (pip's distribution names), e.g. ``'basicsr==1.4.2, torch>=2.6'``.
        when (str): Who applies it: ``'import'``, ``'apply_all'``, ``'train'``, ``'test'`` or
            ``'within NAME'`` (applied by the code of the patch or function NAME while it runs).
        needed (Callable[[Any], bool] | str): Whether this installation needs it, given the original
            (or ``'module:name'`` of such a function); when it returns False, :func:`apply` leaves the
            target alone. Default: always.
        unchecked (str): On a version outside ``checked``: ``'refuse'`` (raise) or ``'skip'`` (warn and
            leave the target alone).
    """
    name: str
    target: str
    replacement: Callable[[Any], Any] | str
    reason: str
    checked: str
    when: str = 'apply_all'
    needed: Callable[[Any], bool] | str = _always
    unchecked: str = 'refuse'

    def __post_init__(self) -> None:
        if not _TARGET.fullmatch(self.target):
            raise ValueError(f'patch {self.name}: target {self.target!r} is not "module:attribute[.attribute][[key]]"')
        if isinstance(self.replacement, str) and not _OBJECT.fullmatch(self.replacement):
            raise ValueError(f'patch {self.name}: replacement {self.replacement!r} is not "module:name"')
        if not all(_REQUIREMENT.fullmatch(part.strip()) for part in self.checked.split(',')):
            raise ValueError(f'patch {self.name}: checked {self.checked!r} is not "library==X.Y[, library>=X.Y]"')
        if self.unchecked not in ('refuse', 'skip'):
            raise ValueError(f"patch {self.name}: unchecked must be 'refuse' or 'skip'")

    def build(self, original: Any) -> Any:
        """The replacement for ``original``."""
        return _callable(self.replacement)(original)

    def is_needed(self, original: Any) -> bool:
        """Whether this installation needs the patch, given the target's current object."""
        return bool(_callable(self.needed)(original))


def _callable(function: Callable | str) -> Callable:
    return _resolve(function) if isinstance(function, str) else function


def replaced_by(name: str) -> Callable[[Any], Any]:
    """A ``replacement`` that puts the object named ``'module:name'`` in place, whatever the original."""
    return lambda original: _resolve(name)


def installed_version(library: str) -> str | None:
    """The installed version of the distribution ``library`` (e.g. ``'basicsr'``), None when not installed."""
    try:
        return importlib.metadata.version(library)
    except importlib.metadata.PackageNotFoundError:
        return None


def unchecked_versions(patch: Patch) -> list[str]:
    """The installed libraries whose version is outside ``patch.checked``, e.g. ``['basicsr 1.5.0']``."""
    outside = []
    for requirement in patch.checked.split(','):
        match = _REQUIREMENT.fullmatch(requirement.strip())
        version = installed_version(match['library'])
        if version is None:
            outside.append(f'{match["library"]} (not installed)')
            continue
        wanted, found = _version_tuple(match['version']), _version_tuple(version)
        fits = found[:len(wanted)] == wanted if match['operator'] == '==' else found >= wanted
        if not fits:
            outside.append(f'{match["library"]} {version}')
    return outside


def _guard(patch: Patch) -> bool:
    """Whether ``patch`` may be applied here; raises or warns (per ``patch.unchecked``) when it may not."""
    outside = unchecked_versions(patch)
    if not outside:
        return True
    message = (f'patch {patch.name} ({patch.target}) was checked against {patch.checked} only, and this '
               f'installation has {", ".join(outside)}')
    if patch.unchecked == 'refuse':
        raise CompatibilityError(f'{message}: install the checked versions (pip install "esc-arch" pins them)')
    warnings.warn(f'{message}: left unpatched', RuntimeWarning, stacklevel=3)
    return False


@dataclasses.dataclass
class _Applied:
    owner: Any
    name: str
    is_item: bool
    original: Any
    replacement: Any


_applied: dict[str, _Applied] = {}


def _locate(target: str) -> tuple[Any, str, bool]:
    """The object holding ``target``, the attribute name or key, and whether it is a mapping item."""
    match = _TARGET.fullmatch(target)
    owner = importlib.import_module(match['module'])
    *parents, last = match['path'].split('.')
    if match['key'] is None:
        for name in parents:
            owner = getattr(owner, name)
        return owner, last, False
    for name in (*parents, last):
        owner = getattr(owner, name)
    return owner, match['key'], True


def _current(owner: Any, name: str, is_item: bool) -> Any:
    return owner.get(name, MISSING) if is_item else getattr(owner, name, MISSING)


def _put(owner: Any, name: str, is_item: bool, value: Any) -> None:
    if value is MISSING:
        if is_item:
            owner.pop(name, None)
        elif name in vars(owner):
            delattr(owner, name)
    elif is_item:
        owner[name] = value
    else:
        setattr(owner, name, value)


def apply(patch: Patch) -> bool:
    """Put ``patch``'s replacement in place, recording the original. Returns whether it changed anything.

    Nothing changes when the patch is already applied, when this installation does not need it, or
    when a library's version is outside ``patch.checked`` and the patch says ``unchecked='skip'``.

    Raises:
        CompatibilityError: A library's version is outside ``patch.checked`` (``unchecked='refuse'``).
    """
    if patch.name in _applied or not _guard(patch):
        return False
    owner, name, is_item = _locate(patch.target)
    current = _current(owner, name, is_item)
    if not patch.is_needed(current):
        return False
    replacement = patch.build(current)
    _put(owner, name, is_item, replacement)
    _applied[patch.name] = _Applied(owner, name, is_item, current, replacement)
    return True


def undo(patch: Patch) -> bool:
    """Put the original back (remove the attribute/item the patch added). Returns whether it was applied.

    Raises:
        RuntimeError: Something replaced the patch's replacement since (e.g. a later patch of the same
            target): undo that first, as :func:`patched` does.
    """
    applied = _applied.get(patch.name)
    if applied is None:
        return False
    if _current(applied.owner, applied.name, applied.is_item) is not applied.replacement:
        raise RuntimeError(f'cannot undo patch {patch.name}: {patch.target} was replaced since; undo that first')
    del _applied[patch.name]
    _put(applied.owner, applied.name, applied.is_item, applied.original)
    return True


def is_applied(patch: Patch) -> bool:
    """Whether ``patch`` is in place (applied and not undone)."""
    return patch.name in _applied


def original(patch: Patch) -> Any:
    """The object ``patch`` replaced (:data:`MISSING` if none), while it is applied.

    Raises:
        LookupError: The patch is not applied.
    """
    if patch.name not in _applied:
        raise LookupError(f'patch {patch.name} is not applied')
    return _applied[patch.name].original


@contextlib.contextmanager
def patched(*patches: Patch) -> Iterator[None]:
    """Apply ``patches`` within a ``with`` block; those it applied are undone at its end, in reverse order."""
    done = []
    try:
        for patch in patches:
            if apply(patch):
                done.append(patch)
        yield
    finally:
        for patch in reversed(done):
            undo(patch)
