"""Fixes that let PyPI's basicsr 1.4.2 run on current torch/torchvision/lmdb.

Imported first by :mod:`esc_arch`, before anything imports basicsr. Each fix checks
whether it is needed and does nothing otherwise; applying them twice is harmless.

* :mod:`.torchvision_fixes`: ``import torchvision`` with a CPU torch, and the removed
  ``torchvision.transforms.functional_tensor`` (must run before basicsr is imported);
* :mod:`.resume`: resuming training without CUDA;
* :mod:`.lmdb_shared`: one LMDB read by several datasets in one process (lmdb >= 2);
* :mod:`.distributed_cpu`: ``--launcher pytorch/slurm`` without CUDA (gloo backend);
* :mod:`.paired_dataset_errors`: ``PairedImageDataset`` errors that name the image files, and LR/HR
  sizes checked against ``scale`` at validation.
"""
from . import distributed_cpu, lmdb_shared, paired_dataset_errors, resume, torchvision_fixes

torchvision_fixes.apply()
resume.apply()
lmdb_shared.apply()
distributed_cpu.apply()
paired_dataset_errors.apply()
