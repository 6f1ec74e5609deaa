"""BasicSR compatibility: the patches that let PyPI's basicsr 1.4.2 run on current libraries, declared and opt-in.

Every replacement of another library's object is a :class:`~esc_arch.compat.patching.Patch` (what it
replaces, why, which versions need it), applied by :func:`~esc_arch.compat.patching.apply`, which
records the original so that :func:`~esc_arch.compat.patching.undo` can restore it. A patch that fixes
a version-specific fault checks whether this installation needs it (``needed``) and otherwise leaves the
target alone; the safety and stricter-checking patches apply on every version. Applying twice is a no-op.

When they apply (docs/ARCHITECTURE.md):

* ``import esc_arch`` applies only what importing basicsr needs (:data:`IMPORT_PATCHES`), after
  :func:`.torchvision_fixes.import_torchvision` makes ``import torchvision`` work;
* the ``basicsr`` command applies :func:`basicsr_patches` too (safe options reading, resuming
  without CUDA, shared LMDBs, gloo launchers, checked paired datasets);
* in your own scripts, :func:`apply_all` applies all of them.
"""
from . import torchvision_fixes
from .patching import MISSING, Patch, apply, is_applied, original, patched, undo

__all__ = ['IMPORT_PATCHES', 'MISSING', 'Patch', 'apply', 'apply_all', 'basicsr_patches', 'is_applied', 'original',
           'patched', 'undo']

IMPORT_PATCHES = (torchvision_fixes.FUNCTIONAL_TENSOR_ALIAS, )
"""Applied by ``import esc_arch``: without them basicsr cannot be imported."""

torchvision_fixes.import_torchvision()
for _patch in IMPORT_PATCHES:
    apply(_patch)
del _patch


def basicsr_patches() -> tuple[Patch, ...]:
    """The patches of BasicSR's training and testing that the ``basicsr`` command applies (in this order).

    * :mod:`.safe_options`: options files and ``--force_yml`` overrides read without running code;
    * :mod:`.resume`: resuming training (``--auto_resume``) without CUDA;
    * :mod:`.lmdb_shared`: one LMDB read by several datasets in one process (lmdb >= 2);
    * :mod:`.distributed_cpu`: ``--launcher pytorch/slurm`` without CUDA (gloo backend);
    * :mod:`esc_arch.data.paired_image_dataset`: the name ``PairedImageDataset`` builds
      :class:`~esc_arch.data.CheckedPairedImageDataset`, whose errors name the image files.
    """
    from esc_arch.data.paired_image_dataset import CHECKED_PAIRED_DATASETS

    from . import distributed_cpu, lmdb_shared, resume, safe_options

    return (*safe_options.PATCHES, resume.RESUME_WITHOUT_CUDA, lmdb_shared.SHARED_LMDB_ENVIRONMENTS,
            *distributed_cpu.PATCHES, CHECKED_PAIRED_DATASETS)


def apply_all() -> list[str]:
    """Apply every patch, as the ``basicsr`` command does: for your own scripts that run BasicSR's pipelines.

    Returns:
        list[str]: The names of the patches this call applied (already applied or unneeded ones are left out).
    """
    return [patch.name for patch in (*IMPORT_PATCHES, *basicsr_patches()) if apply(patch)]
