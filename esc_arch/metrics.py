"""The paper's real-world image-quality metrics (Table 7) through pyiqa, as one BasicSR metric, with no downloads.

The paper scores ESC-Real with pyiqa (psnry, ssim, lpips, dists, niqe, maniqa, musiq, clipiqa). pyiqa is
an optional extra (``pip install "esc-arch[iqa]"``), imported only when such a metric is computed. In an
options file::

    val:
      metrics:
        lpips:
          type: calculate_pyiqa
          metric: lpips    # a pyiqa metric name
          better: lower    # BasicSR's best-result tracking

Most of these metrics need weight files that pyiqa would download on first use. Here they must be on
disk already (:func:`pyiqa_weight_files` lists them and where pyiqa looks); otherwise the metric stops
with one line naming the missing files, unless ``download: true`` is set under it, which lets pyiqa
fetch them. Other keys under the metric (``device``, ``crop_border``...) are passed to
``pyiqa.create_metric``.

pyiqa's ``niqe``, ``psnry`` and ``ssim`` take the luma of YIQ; BasicSR's ``calculate_niqe``,
``calculate_psnr`` and ``calculate_ssim`` (``test_y_channel``) that of YCbCr (BT.601), so their values
differ from the paper's. The file list was read from pyiqa 0.1.16's sources; another pyiqa version may
load other files. pyiqa unpickles some of its weight files in full, which can run code; inside the
``basicsr`` command (and after ``apply_all()``) the ``weights-only-torch-load`` row of
:mod:`esc_arch.compat.table` restricts those loads to tensors too, so a weight file that needs more is
refused there. Either way, put in those folders only files from pyiqa's (and torchvision's, OpenAI CLIP's,
timm's) own releases. (Inferred from pyiqa's sources; pyiqa was not run here.)
"""
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from esc_arch.errors import OptionsError

from basicsr.utils.registry import METRIC_REGISTRY

__all__ = ['PAPER_METRICS', 'WeightFile', 'calculate_pyiqa', 'check_pyiqa_metric', 'missing_weight_files',
           'pyiqa_weight_files']

PAPER_METRICS = ('psnry', 'ssim', 'lpips', 'dists', 'niqe', 'maniqa', 'musiq', 'clipiqa')
"""The pyiqa metrics of paper Table 7 (FID, which compares folders rather than image pairs, aside)."""

# (cache, name) per metric, from pyiqa 0.1.16: its own files (torch hub dir/pyiqa), torchvision's ImageNet
# weights of the feature networks (torch hub dir/checkpoints, named by their torchvision enum), OpenAI
# CLIP's (torch hub dir/clip) and timm's ViT through the Hugging Face cache (a repository id: timm's default
# pretrained tag of vit_base_patch8_224, read from timm's sources).
_FILES = {
    'psnry': (),
    'ssim': (),
    'lpips': (('pyiqa', 'LPIPS_v0.1_alex-df73285e.pth'), ('torchvision', 'AlexNet_Weights.IMAGENET1K_V1')),
    'dists': (('pyiqa', 'DISTS_weights-f5e65c96.pth'), ('torchvision', 'VGG16_Weights.IMAGENET1K_V1')),
    'niqe': (('pyiqa', 'niqe_modelparameters.mat'),),
    'maniqa': (('pyiqa', 'ckpt_koniq10k.pt'), ('huggingface', 'timm/vit_base_patch8_224.augreg2_in21k_ft_in1k')),
    'musiq': (('pyiqa', 'musiq_koniq_ckpt-e95806b9.pth'),),
    'clipiqa': (('clip', 'RN50.pt'),),
}
_SCORERS = {}  # (metric, device, options) -> pyiqa metric, built once per process


@dataclass(frozen=True)
class WeightFile:
    """A file that a pyiqa metric loads: ``path`` (for a Hugging Face repository, its cache folder); is it there."""
    metric: str
    path: Path
    present: bool


def _huggingface_cache() -> Path:
    """huggingface_hub's cache folder, by its own rules (HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE, HF_HOME, XDG)."""
    for variable in ('HF_HUB_CACHE', 'HUGGINGFACE_HUB_CACHE'):
        if os.environ.get(variable):
            return Path(os.environ[variable])
    cache_home = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    return Path(os.environ.get('HF_HOME') or os.path.join(cache_home, 'huggingface')) / 'hub'


def _weight_file(metric: str, cache: str, name: str) -> WeightFile:
    hub = Path(torch.hub.get_dir())
    if cache == 'huggingface':
        folder = _huggingface_cache() / f'models--{name.replace("/", "--")}'
        present = any(folder.glob('snapshots/*/model.safetensors')) or any(folder.glob('snapshots/*/pytorch_model.bin'))
        return WeightFile(metric, folder, present)
    if cache == 'torchvision':
        from torchvision.models import get_weight

        path = hub / 'checkpoints' / get_weight(name).url.rsplit('/', 1)[-1]
    else:
        path = hub / cache / name
    return WeightFile(metric, path, path.is_file())


def pyiqa_weight_files(metrics: Iterable[str] = PAPER_METRICS) -> list[WeightFile]:
    """The files that pyiqa loads for ``metrics``, where it looks for them, and whether each is there.

    Args:
        metrics (Iterable[str]): pyiqa metric names among :data:`PAPER_METRICS`. Default: all of them.

    Returns:
        list[WeightFile]: One entry per file, in the order of ``metrics`` (none for psnry and ssim).

    Raises:
        OptionsError: A metric whose files are not known here.
    """
    files = []
    for metric in metrics:
        if metric not in _FILES:
            raise OptionsError(f'pyiqa metric {metric!r}: its files are known for {", ".join(PAPER_METRICS)} only')
        files += [_weight_file(metric, cache, name) for cache, name in _FILES[metric]]
    return files


def missing_weight_files(metrics: Iterable[str] = PAPER_METRICS) -> str | None:
    """One line saying which of ``metrics`` needs which missing file, or None when every file is there."""
    missing = {}
    for file in pyiqa_weight_files(metrics):
        if not file.present:
            missing.setdefault(file.metric, []).append(str(file.path))
    if not missing:
        return None
    return '; '.join(f'pyiqa metric {metric} needs {", ".join(paths)}' for metric, paths in missing.items())


def _import_pyiqa():
    try:
        import pyiqa
    except ImportError as error:
        raise OptionsError(f'metric type calculate_pyiqa needs the pyiqa package ({error}): pip install '
                           '"esc-arch[iqa]"; offline, calculate_niqe is BasicSR\'s NIQE (not the paper\'s)') from None
    return pyiqa


def check_pyiqa_metric(metric: str, download: bool = False) -> None:
    """Raise unless the pyiqa ``metric`` can be computed here without downloading anything.

    Args:
        metric (str): A pyiqa metric name.
        download (bool): The user lets pyiqa download what it needs: only pyiqa itself must be installed.

    Raises:
        OptionsError: pyiqa is not installed, the metric's files are missing (one line naming them), or
            the metric is not one of :data:`PAPER_METRICS` (whose files are known) and ``download`` is false.
    """
    _import_pyiqa()
    if download:
        return
    if metric not in _FILES:
        raise OptionsError(f'pyiqa metric {metric!r}: esc_arch knows the files of {", ".join(PAPER_METRICS)} only; '
                           'set download: true under this metric to let pyiqa fetch what it needs')
    missing = missing_weight_files([metric])
    if missing:
        raise OptionsError(f'{missing} (not found; copy the files there, or set download: true under this metric '
                           'to let pyiqa fetch them)')


def _scorer(metric: str, download: bool, device: str | None, options: dict):
    key = (metric, device, repr(sorted(options.items())))
    if key not in _SCORERS:
        check_pyiqa_metric(metric, download)
        _SCORERS[key] = _import_pyiqa().create_metric(metric, device=None if device is None else torch.device(device),
                                                      **options)
    return _SCORERS[key]


def _as_batch(image: np.ndarray) -> torch.Tensor:
    """A BasicSR metric image (HWC, BGR, values in [0, 255]) as pyiqa takes it: (1, 3, H, W) RGB in [0, 1]."""
    image = np.asarray(image, dtype=np.float32) / 255
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(image[..., ::-1])).permute(2, 0, 1)[None]


@METRIC_REGISTRY.register()
def calculate_pyiqa(img: np.ndarray, img2: np.ndarray | None = None, metric: str | None = None,
                    download: bool = False, device: str | None = None, better: str | None = None,
                    **options: object) -> float:
    """A pyiqa metric of the output ``img`` (against ``img2`` for full-reference metrics), as the paper scores.

    Args:
        img (ndarray): The output as BasicSR's metrics take it: HWC, BGR, values in [0, 255] (uint8).
        img2 (ndarray | None): The ground truth, same layout; needed by full-reference metrics.
        metric (str): The pyiqa metric name, e.g. ``lpips`` or ``niqe`` (:data:`PAPER_METRICS`).
        download (bool): Let pyiqa download missing weight files. Default: False (missing files are an error).
        device (str | None): Device of the metric network. Default: pyiqa's (CUDA when available).
        better (str | None): BasicSR's ``higher``/``lower`` for best-result tracking; not used here.
        **options: Passed to ``pyiqa.create_metric``.

    Returns:
        float: The metric's value for this image.
    """
    if not metric:
        raise OptionsError(f'metric type calculate_pyiqa needs metric: NAME (e.g. one of {", ".join(PAPER_METRICS)})')
    scorer = _scorer(metric, download, device, options)
    if getattr(scorer, 'metric_mode', 'NR') == 'FR':
        if img2 is None:
            raise OptionsError(f'pyiqa metric {metric} compares the output with its ground truth, and this test set '
                               'has none: use it on paired sets only')
        score = scorer(_as_batch(img), _as_batch(img2))
    else:
        score = scorer(_as_batch(img))
    return float(torch.as_tensor(score, dtype=torch.float64).mean())
