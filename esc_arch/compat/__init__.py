"""BasicSR compatibility: the patches that let PyPI's basicsr 1.4.2 run safely on current libraries.

Every patch is a row of one table, :data:`~esc_arch.compat.table.PATCHES` (what it replaces, why,
the versions it was checked against, who applies it); the mechanism (:class:`~esc_arch.patching.Patch`,
:func:`~esc_arch.patching.apply`, :func:`~esc_arch.patching.undo`, ...) is :mod:`esc_arch.patching`.
The modules of this package hold the replacements of library concerns (torchvision, safe loading,
resuming, LMDB, launchers); the others live beside the code they serve (options, data, models, cli).

* ``import esc_arch`` applies the ``'import'`` rows, after :func:`.torchvision_fixes.import_torchvision`
  makes ``import torchvision`` work;
* :func:`apply_all` applies the ``'apply_all'`` rows too: for your own scripts (``register.py``);
* every ``basicsr`` command applies them for its run (:func:`command_patches`), ``train`` and ``test``
  their own rows as well.
"""
from esc_arch.patching import MISSING, Patch, apply, is_applied, original, patched, undo

from . import torchvision_fixes
from .table import PATCHES, patches_for

__all__ = ['MISSING', 'PATCHES', 'Patch', 'apply', 'apply_all', 'basicsr_patches', 'command_patches', 'is_applied',
           'original', 'patched', 'patches_for', 'undo']

torchvision_fixes.import_torchvision()
for _patch in patches_for('import'):
    apply(_patch)
del _patch


def basicsr_patches() -> tuple[Patch, ...]:
    """The patches :func:`apply_all` applies besides the import ones (the ``'apply_all'`` rows), in order."""
    return patches_for('apply_all')


def command_patches(command: str) -> tuple[Patch, ...]:
    """The patches in place while ``basicsr COMMAND`` runs: the ``'apply_all'`` rows and the command's own."""
    return (*patches_for('apply_all'), *patches_for(command))


def apply_all() -> list[str]:
    """Apply every ``'import'`` and ``'apply_all'`` patch: for your own scripts that run BasicSR's pipelines.

    Returns:
        list[str]: The names of the patches this call applied (already applied or unneeded ones are left out).

    Raises:
        CompatibilityError: An installed library's version is outside a patch's guard.
    """
    return [patch.name for patch in (*patches_for('import'), *basicsr_patches()) if apply(patch)]
