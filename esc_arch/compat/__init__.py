"""BasicSR compatibility: the patches that let PyPI's basicsr 1.4.2 run safely on current libraries.

Every patch is a row of one table, :data:`~esc_arch.compat.table.PATCHES` (what it replaces, why,
the versions it was checked against, who applies it); the mechanism (:class:`~esc_arch.patching.Patch`,
:func:`~esc_arch.patching.apply`, :func:`~esc_arch.patching.undo`, ...) is :mod:`esc_arch.patching`.
The modules of this package hold the replacements of library concerns (torchvision, safe loading,
resuming, LMDB, launchers); the others live beside the code they serve (options, data, models, cli).

* the ``'import'`` rows are applied by :func:`apply_import_patches` just before basicsr's own code
  runs (the import hook of :mod:`esc_arch.registration`, installed by ``import esc_arch``), after
  :func:`.torchvision_fixes.import_torchvision` makes ``import torchvision`` work; importing this
  package applies nothing and imports neither torch nor basicsr;
* :func:`apply_all` applies the ``'apply_all'`` rows too: for your own scripts (``register.py``);
* every ``basicsr`` command applies them for its run (:func:`command_patches`), ``train`` and ``test``
  their own rows as well.
"""
from esc_arch.patching import MISSING, Patch, apply, is_applied, original, patched, undo

from .table import PATCHES, patches_for

__all__ = ['MISSING', 'PATCHES', 'Patch', 'apply', 'apply_all', 'apply_import_patches', 'basicsr_patches',
           'command_patches', 'is_applied', 'original', 'patched', 'patches_for', 'undo']


def apply_import_patches() -> list[str]:
    """Make ``import torchvision`` work and apply the ``'import'`` rows: what importing basicsr needs.

    Returns:
        list[str]: The names of the patches this call applied.
    """
    from .torchvision_fixes import import_torchvision

    import_torchvision()
    return [patch.name for patch in patches_for('import') if apply(patch)]


def basicsr_patches() -> tuple[Patch, ...]:
    """The patches :func:`apply_all` applies besides the import ones (the ``'apply_all'`` rows), in order."""
    return patches_for('apply_all')


def command_patches(command: str) -> tuple[Patch, ...]:
    """The patches in place while ``basicsr COMMAND`` runs: the ``'apply_all'`` rows and the command's own."""
    return (*patches_for('apply_all'), *patches_for(command))


def apply_all() -> list[str]:
    """Apply every ``'import'`` and ``'apply_all'`` patch: for your own scripts that run BasicSR's pipelines.

    It imports basicsr, so ESC's classes are registered in its registries afterwards
    (:mod:`esc_arch.registration`).

    Returns:
        list[str]: The names of the patches this call applied (already applied or unneeded ones are left out).

    Raises:
        CompatibilityError: An installed library's version is outside a patch's guard.
    """
    from esc_arch.registration import register

    applied = apply_import_patches()
    applied += [patch.name for patch in basicsr_patches() if apply(patch)]
    register()
    return applied
