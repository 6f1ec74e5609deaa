"""One mechanism for every replacement of another library's object: declare a :class:`Patch`, apply, undo.

A patch names what it replaces as ``'module:attribute.path'`` (an attribute, however deep) or
``'module:attribute.path[key]'`` (an item of a mapping, e.g. ``'sys:modules[name]'`` or a registry's
``_obj_map[name]``). :func:`apply` records the original object and puts the replacement in place;
:func:`undo` puts the original back (or removes the attribute/item when there was none). Applying
an applied patch, or undoing one that is not applied, does nothing. :func:`patched` applies patches
for the duration of a ``with`` block. Several patches may replace one target, each wrapping the one
before: they are undone in the reverse order (:func:`undo` refuses otherwise).
"""
import contextlib
import dataclasses
import importlib
import re
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ['MISSING', 'Patch', 'apply', 'is_applied', 'original', 'patched', 'undo']

MISSING = object()
"""The "original" of a patch whose target did not exist (the patch adds it; undoing removes it)."""

_TARGET = re.compile(r'(?P<module>[\w.]+):(?P<path>\w+(?:\.\w+)*)(?:\[(?P<key>[^\]]+)\])?')


def _always(original: Any) -> bool:
    return True


@dataclasses.dataclass(frozen=True)
class Patch:
    """What one patch replaces, why, and for which versions; applied with :func:`apply`.

    Args:
        name (str): Short unique name, e.g. ``'resume-without-cuda'``.
        target (str): ``'module:attribute.path'`` or ``'module:attribute.path[key]'`` (mapping item).
        replacement (Callable[[Any], Any]): Builds the object to put in place from the original one
            (:data:`MISSING` when the target does not exist).
        reason (str): The failure or risk it addresses, in one sentence.
        versions (str): Which versions of which libraries need it, e.g. ``'basicsr 1.4.2'``.
        needed (Callable[[Any], bool]): Whether this installation needs it, given the original; when
            it returns False, :func:`apply` leaves the target alone. Default: always.
    """
    name: str
    target: str
    replacement: Callable[[Any], Any]
    reason: str
    versions: str
    needed: Callable[[Any], bool] = _always

    def __post_init__(self):
        if not _TARGET.fullmatch(self.target):
            raise ValueError(f'patch {self.name}: target {self.target!r} is not "module:attribute[.attribute][[key]]"')


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

    Nothing changes when the patch is already applied or when this installation does not need it.
    """
    if patch.name in _applied:
        return False
    owner, name, is_item = _locate(patch.target)
    current = _current(owner, name, is_item)
    if not patch.needed(current):
        return False
    replacement = patch.replacement(current)
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
