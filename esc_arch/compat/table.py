"""Every patch of another library that esc_arch makes, in one table: target, reason, guard, who applies it.

Read a row as: ``name`` replaces ``target`` with ``replacement`` (``'module:builder'``, called with the
original; :func:`~esc_arch.patching.replaced_by` for a plain object), because of ``reason``; it was
checked against ``checked`` (on other versions :func:`~esc_arch.patching.apply` refuses with a
:class:`~esc_arch.errors.CompatibilityError`, or skips with a warning where ``unchecked='skip'``), and
is applied ``when``:

* ``'import'``: by :func:`esc_arch.compat.apply_import_patches` (what importing basicsr needs), which the
  import hook that ``import esc_arch`` installs (:mod:`esc_arch.registration`) calls before basicsr or
  torchvision is imported, and :func:`esc_arch.compat.apply_all` calls too;
* ``'apply_all'``: by :func:`esc_arch.compat.apply_all` (``register.py``, your own scripts) and by
  every ``basicsr`` command for its run;
* ``'train'`` / ``'test'``: by ``basicsr train`` / ``basicsr test`` for the run, besides the above;
* ``'within NAME'``: by the code of NAME (a patch or a function), only while it runs.

The replacements live in the modules of their concern and are imported only when applied: this
module imports nothing but :mod:`esc_arch.patching`. Patches of one target are not stacked: each
target has one row per scope. Nothing here writes to BasicSR outside these rows.
"""
from esc_arch.patching import Patch, replaced_by

__all__ = ['BASICSR', 'PATCHES', 'patches_for', 'patches_named']

BASICSR = 'basicsr==1.4.2'
"""The one basicsr release the BasicSR patches were checked against (setup.py requires it)."""

_UNSAFE_YAML = ("basicsr reads options files with PyYAML's full loader (runs !!python tags) and eval/execs "
                '--force_yml entries')
_GLOO = '--launcher {} pins each process to a CUDA device and uses nccl, which fails without CUDA'

PATCHES = (
    # ------------------------------------------------------------ before basicsr or torchvision is imported
    Patch(name='torchvision-functional-tensor',
          target='sys:modules[torchvision.transforms.functional_tensor]',
          replacement='esc_arch.compat.torchvision_fixes:functional_tensor_alias',
          reason="basicsr's data/degradations.py imports rgb_to_grayscale from torchvision.transforms."
          'functional_tensor, which torchvision 0.17 removed',
          checked=BASICSR, when='import', unchecked='skip',
          needed='esc_arch.compat.torchvision_fixes:functional_tensor_is_missing'),
    # ------------------------------------------------------------ apply_all() and every basicsr command
    Patch(name='weights-only-torch-load', target='torch:load',
          replacement='esc_arch.compat.safe_load:weights_only_load',
          reason='basicsr loads pretrain_network_g and the files of SpyNet/BasicVSR/TOFlow/DFDNet/VGG with '
          'torch.load without weights_only, which runs pickled code under TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1',
          checked=f'{BASICSR}, torch>=2.6'),
    Patch(name='safe-ordered-yaml', target='basicsr.utils.options:ordered_yaml',
          replacement='esc_arch.options.loading:safe_ordered_yaml', reason=_UNSAFE_YAML, checked=BASICSR),
    *(Patch(name=f'safe-parse-options-{module}', target=f'basicsr.{module}:parse_options',
            replacement='esc_arch.options.loading:safe_parse_options', reason=_UNSAFE_YAML, checked=BASICSR)
      for module in ('utils.options', 'train', 'test')),
    Patch(name='resume-without-cuda', target='basicsr.train:load_resume_state',
          replacement=replaced_by('esc_arch.compat.resume:load_resume_state'),
          reason='basicsr maps resumed training states onto CUDA, reads them without weights_only, and finds '
          '--auto_resume states from the working directory',
          checked=BASICSR, needed='esc_arch.compat.resume:needs_fix'),
    Patch(name='lmdb-shared-environments', target='basicsr.utils.file_client:LmdbBackend.__init__',
          replacement=replaced_by('esc_arch.compat.lmdb_shared:backend_init'),
          reason="py-lmdb >= 2 refuses a second open of one database in a process, which BasicSR's LmdbBackend "
          'does for every dataset (and DataLoader workers inherit the open ones)',
          checked=BASICSR, needed='esc_arch.compat.lmdb_shared:needs_fix'),
    *(Patch(name=f'gloo-launcher-{launcher}', target=f'basicsr.utils.dist_util:_init_dist_{launcher}',
            replacement='esc_arch.compat.distributed_cpu:gloo_without_cuda', reason=_GLOO.format(launcher),
            checked=BASICSR)
      for launcher in ('pytorch', 'slurm')),
    Patch(name='checked-paired-image-dataset',
          target='basicsr.utils.registry:DATASET_REGISTRY._obj_map[PairedImageDataset]',
          replacement=replaced_by('esc_arch.data.paired_image_dataset:CheckedPairedImageDataset'),
          reason="BasicSR's PairedImageDataset names no file when an image is unreadable or a pair does not fit "
          'the scale, and scores a validation pair of another scale silently',
          checked=BASICSR),
    Patch(name='folder-real-esrgan-dataset',
          target='basicsr.utils.registry:DATASET_REGISTRY._obj_map[RealESRGANDataset]',
          replacement=replaced_by('esc_arch.data.real_world_dataset:RealESRGANDataset'),
          reason="BasicSR's RealESRGANDataset needs a meta_info list (the authors' options give a folder) and "
          'fails on a missing folder or an unreadable image with an unrelated error',
          checked=BASICSR),
    # ------------------------------------------------------------ basicsr train / basicsr test
    Patch(name='checked-train-dataloaders', target='basicsr.train:create_train_val_dataloader',
          replacement='esc_arch.cli.basicsr_pipeline:checked_train_dataloaders',
          reason='basicsr trains 0 iterations and exits as if it had trained when the training set is smaller '
          "than a batch; and a stop save (SIGTERM) records the epoch, which only the training sampler knows",
          checked=BASICSR, when='train'),
    Patch(name='workers-ignore-stop-signals', target='basicsr.data:worker_init_fn',
          replacement=replaced_by('esc_arch.runs.stop_signals:worker_init_ignoring_stop_signals'),
          reason='a SIGTERM sent to every process of a job ends the DataLoader workers, failing the training '
          'before it saves',
          checked=BASICSR, when='train', needed='esc_arch.runs.stop_signals:can_wait_for_signals'),
    Patch(name='one-thread-data-workers', target='basicsr.train:build_dataloader',
          replacement='esc_arch.threads:build_dataloader_with_one_thread_workers',
          reason="BasicSR's DataLoader workers keep the training process's OpenCV thread count (torch sets only "
          'its own to 1), so on a busy machine their threads compete with the training for the CPUs',
          checked=BASICSR, when='train'),
    Patch(name='untrained-weights-warning', target='basicsr.test:build_model',
          replacement='esc_arch.cli.basicsr_pipeline:warn_before_building_untrained',
          reason='basicsr test scores a network with random weights when no checkpoint is given, without a word',
          checked=BASICSR, when='test'),
    # ------------------------------------------------------------ scoped
    Patch(name='basicsr-parser-argv', target='sys:argv',
          replacement='esc_arch.options.loading:argv_for_basicsr_parser',
          reason="basicsr's parse_options reads sys.argv and execs its --force_yml entries (however abbreviated); "
          'it gets the run\'s arguments without them (they are applied already, safely)',
          checked=BASICSR, when='within safe-parse-options'),
    Patch(name='pretend-cuda-device-count', target='torch.cuda:device_count',
          replacement='esc_arch.compat.distributed_cpu:one_device',
          reason='basicsr divides the rank by the device count', checked=BASICSR, when='within gloo-launcher'),
    Patch(name='pretend-cuda-set-device', target='torch.cuda:set_device',
          replacement='esc_arch.compat.distributed_cpu:no_pinning',
          reason='basicsr pins every process to a CUDA device', checked=BASICSR, when='within gloo-launcher'),
)


def patches_for(when: str) -> tuple[Patch, ...]:
    """The rows of :data:`PATCHES` applied ``when`` (``'import'``, ``'apply_all'``, ``'train'``, ...), in order."""
    return tuple(patch for patch in PATCHES if patch.when == when)


def patches_named(*names: str) -> tuple[Patch, ...]:
    """The rows of :data:`PATCHES` called ``names``, in that order."""
    by_name = {patch.name: patch for patch in PATCHES}
    return tuple(by_name[name] for name in names)
