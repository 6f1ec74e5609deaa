"""The weights files runs need: the authors' release (what each file is, the options that use it, the
paper's scores) and the third-party files training needs (torchvision's VGG19 for the perceptual loss).

The authors' files are the assets of release 1.0.0 of their repository (``dslisleedh/ESC`` on GitHub).
The release publishes no list of hashes, and this project was written without internet access, so
which files the release holds is known only from the names in the authors' files: a name their test
options read from the release folder is listed as such; a name found elsewhere (a training option's
start, their arbitrary-scale README) is marked *not confirmed* (:attr:`Release.confirmed`).
``basicsr download NAME`` fetches a file (:mod:`esc_arch.download`) into ``experiments/pretrained_models/``,
where the generated options look for them. The PSNR values are the paper's (Y channel, border =
scale), from its Table 2 (DIV2K training) and Table 4 (DFLIP training); ESC-XL and ESC-Real have no
Set5/Urban100 PSNR in the paper.

This module imports nothing heavy (no torch): the command line and the preflight checks read it.
"""
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ['ESC_LTE_PRESET', 'RELEASE_URL', 'PRETRAINED_DIR', 'Release', 'RELEASES', 'ThirdPartyFile',
           'THIRD_PARTY_FILES', 'VGG19',
           'RequiredFileStatus', 'download_command', 'find_release', 'find_third_party', 'markdown_table',
           'release_names', 'release_status', 'required_file_status', 'scale_label',
           'torch_hub_checkpoints']

RELEASE_URL = 'https://github.com/dslisleedh/ESC/releases/download/1.0.0'
"""Where the release's files are: ``RELEASE_URL/<file name>``."""

PRETRAINED_DIR = 'experiments/pretrained_models'
"""Default folder of downloaded weights, relative to the directory ``basicsr`` runs in (as BasicSR's)."""

ESC_LTE_PRESET = 'ESC-LTE'  # as esc_arch.archs.esc_lte.ESC_LTE_PRESET, without importing torch


@dataclass(frozen=True)
class Release:
    """One weights file of the authors.

    Args:
        name (str): File name in the release (and on disk).
        preset (str): The published configuration it fits (:func:`esc_arch.build_preset`, or ``ESC-LTE``).
        scale (int | None): Upscaling factor; None for the arbitrary-scale ESC+LTE.
        training (str): Training data and stage, as the paper names them.
        options (str | None): Options file that uses it, relative to the repository root; None if none does.
        set5_psnr (float | None): The paper's Set5 PSNR (dB), None where the paper has none.
        urban100_psnr (float | None): The paper's Urban100 PSNR (dB), likewise.
        source (str): Where the PSNR values come from.
        named_in (str): Which of the authors' files names it.
        confirmed (bool): Whether the authors' test options read it from the release folder; False: the
            name is the authors', but this project cannot confirm that release 1.0.0 holds the file.
    """
    name: str
    preset: str
    scale: int | None
    training: str
    options: str | None
    set5_psnr: float | None = None
    urban100_psnr: float | None = None
    source: str = ''
    named_in: str = 'their test options'
    confirmed: bool = True


NO_PSNR = 'no PSNR in the paper'


def _family(file_pattern: str, preset: str, options_stem: str, training: str, psnr: dict | None = None,
            source: str = NO_PSNR, scales: tuple[int, ...] = (2, 3, 4)) -> list[Release]:
    """One release per scale; ``psnr`` maps a scale to its (Set5, Urban100) PSNR."""
    psnr = psnr or {}
    return [Release(file_pattern.format(scale=scale), preset, scale, training,
                    f'options/test/test_{options_stem}_x{scale}.yml', *psnr.get(scale, (None, None)),
                    source if scale in psnr else NO_PSNR) for scale in scales]


REAL_STAGE_1_OPTIONS = 'options/train/train_ESC_Real_x4_GAN.yml'
"""The options that start from ``ESC_Real_X4_MSE.pth`` (with the override their comment gives)."""

# (Set5, Urban100) PSNR by scale, from the paper's tables.
RELEASES: dict[str, Release] = {release.name: release for release in [
    *_family('ESC_DIV2K_X{scale}.pth', 'ESC', 'ESC', 'DIV2K',
             {2: (38.35, 33.46), 3: (34.84, 29.28), 4: (32.68, 27.07)}, 'paper Table 2'),
    *_family('ESC_light_X{scale}.pth', 'ESC-light', 'ESC_light', 'DIV2K',
             {2: (38.24, 33.05), 3: (34.61, 28.93), 4: (32.52, 26.76)}, 'paper Table 2'),
    *_family('ESC_FP_X{scale}.pth', 'ESC-FP', 'ESC_FP', 'DIV2K',
             {2: (38.27, 33.22), 3: (34.72, 29.12), 4: (32.56, 26.90)}, 'paper Table 2'),
    *_family('ESC_DFLIP_X{scale}.pth', 'ESC', 'ESC_DFLIP', 'DFLIP (DIV2K, Flickr2K, LSDIR, DiverSeg-IP)',
             {2: (38.34, 33.86), 3: (34.85, 29.70), 4: (32.79, 27.45)}, 'paper Table 4'),
    *_family('ESC_XL_DF2K_X{scale}_FT.pth', 'ESC-XL', 'ESC_XL', 'DF2K, fine-tuned'),
    Release('ESC_XL_DF2K_X2_PT.pth', 'ESC-XL', 2, 'DF2K, pre-training (before fine-tuning)', None,
            source=NO_PSNR, named_in='their ESC-XL files, as the pre-training weights', confirmed=False),
    *_family('ESC_Real_X4_GAN.pth', 'ESC-Real', 'ESC_Real', 'DF2K + OST, real-world degradations, GAN stage',
             scales=(4, )),
    Release('ESC_Real_X4_MSE.pth', 'ESC-Real', 4, 'DF2K + OST, real-world degradations, stage 1 (L1)',
            REAL_STAGE_1_OPTIONS, source=NO_PSNR, named_in='their GAN-stage options, as its start', confirmed=False),
    Release('esc_lte.pth', ESC_LTE_PRESET, None, 'DIV2K, arbitrary scale (x1-x4 in training)', None,
            source='PSNR by scale: paper Table 6', named_in='their arbitrary-scale README',
            confirmed=False),
]}


def release_names() -> list[str]:
    """The file names of every released weights file, in registry order."""
    return list(RELEASES)


def _same_name(given: str, file_name: str) -> bool:
    return given.lower().removesuffix('.pth') == file_name.lower().removesuffix('.pth')


def find_release(name: str) -> Release | None:
    """The release called ``name``: its file name, in any case, with or without ``.pth``; None if there is none."""
    return next((release for file_name, release in RELEASES.items() if _same_name(name, file_name)), None)


def release_status(release: Release) -> str:
    """Whether ``release`` is known to be in the release, in a few words (``--list`` and the README table)."""
    if release.confirmed:
        return 'yes (their test options read it)'
    return f'not confirmed (named in {release.named_in})'


def markdown_table() -> str:
    """The README's model-zoo table: one row per released file (``tests/test_download.py`` checks the README)."""
    def psnr(value: float | None) -> str:
        return '-' if value is None else f'{value:.2f}'

    lines = ['| release file | in release 1.0.0 | network | scale | trained on | options | Set5 PSNR | Urban100 PSNR '
             '| source |',
             '|---|---|---|---|---|---|---|---|---|']
    lines += [f'| `{release.name}` | {release_status(release)} | {release.preset} | {scale_label(release)} | '
              f'{release.training} | {f"`{release.options}`" if release.options else "-"} | '
              f'{psnr(release.set5_psnr)} | {psnr(release.urban100_psnr)} | {release.source} |'
              for release in RELEASES.values()]
    return '\n'.join(lines)


def scale_label(release: Release) -> str:
    """``x4``, or ``any`` for the arbitrary-scale network."""
    return 'any' if release.scale is None else f'x{release.scale}'


# ---------------------------------------------------------------- third-party files training needs

@dataclass(frozen=True)
class ThirdPartyFile:
    """A weights file of another project that a run needs, fetched by ``basicsr download NAME``.

    Args:
        name (str): File name, as the other project names it (and as it is saved).
        url (str): Where it is published.
        sha256_prefix (str): The leading hex digits of its SHA-256 that its publisher gives: only a prefix is
            published (torchvision embeds 8 digits in the file name), so a check against it cannot rule out
            a deliberately crafted file; the download also requires the file to load as the expected weights.
        needed_for (str): Which options need it.
        shapes (dict): Tensor names and shapes the file must hold (a check that it is the weights expected).
        other_places (tuple[str, ...]): Other paths (relative to the run's folder) where the user of the file
            also looks for it, before torch's hub cache.
    """
    name: str
    url: str
    sha256_prefix: str
    needed_for: str
    shapes: dict = field(default_factory=dict)
    other_places: tuple[str, ...] = ()

    @property
    def alias(self) -> str:
        """The short name (``vgg19``): the file name before its hash."""
        return self.name.rsplit('-', 1)[0]


VGG19 = ThirdPartyFile(
    'vgg19-dcbb9e9d.pth', 'https://download.pytorch.org/models/vgg19-dcbb9e9d.pth', 'dcbb9e9d',
    "BasicSR's PerceptualLoss with vgg_type vgg19 (ESC-Real stage 2, train_ESC_Real_x*_GAN.yml)",
    shapes={'features.0.weight': (64, 3, 3, 3), 'features.34.weight': (512, 512, 3, 3),
            'classifier.6.weight': (1000, 4096)},
    other_places=(f'{PRETRAINED_DIR}/vgg19-dcbb9e9d.pth', ))  # BasicSR's VGG_PRETRAIN_PATH, read first

THIRD_PARTY_FILES: dict[str, ThirdPartyFile] = {VGG19.name: VGG19}


def find_third_party(name: str) -> ThirdPartyFile | None:
    """The third-party file called ``name`` (file name or short name, any case, ``.pth`` optional); or None."""
    return next((item for item in THIRD_PARTY_FILES.values()
                 if _same_name(name, item.name) or _same_name(name, item.alias)), None)


def torch_hub_checkpoints() -> Path:
    """Where torchvision keeps downloaded weights: ``torch.hub.get_dir()/checkpoints``.

    Computed as ``torch.hub.get_dir`` does (``$TORCH_HOME``, else ``$XDG_CACHE_HOME/torch``, else
    ``~/.cache/torch``) when torch is not imported yet, so that asking costs no torch import.
    """
    import sys
    hub = sys.modules.get('torch.hub')
    if hub is not None:
        return Path(hub.get_dir()) / 'checkpoints'
    cache = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    torch_home = os.environ.get('TORCH_HOME') or os.path.join(cache, 'torch')
    return Path(os.path.expanduser(torch_home)) / 'hub' / 'checkpoints'


@dataclass(frozen=True)
class RequiredFileStatus:
    """Whether a third-party file is where its user looks, and how to get it.

    Args:
        name (str): File name.
        present (bool): Found (a file at one of ``places``); its content is not checked here.
        path (Path): Where it was found, else where ``command`` puts it.
        places (tuple[Path, ...]): Every place looked at, in the order its user reads them.
        needed_for (str): Which options need it.
        command (str): The command that provides it.
    """
    name: str
    present: bool
    path: Path
    places: tuple[Path, ...]
    needed_for: str
    command: str


def required_file_status(names: Iterable[str] | None = None) -> list[RequiredFileStatus]:
    """Whether each third-party file (all, or those named) is present, and the command that provides it.

    Cheap (no hashing, no torch import): meant for checks before a run starts. ``basicsr download``
    checks the content when it fetches a file.

    Raises:
        KeyError: A name that is not a third-party file.
    """
    wanted = list(THIRD_PARTY_FILES.values()) if names is None else [_third_party_or_key_error(name)
                                                                      for name in names]
    statuses = []
    for item in wanted:
        home = torch_hub_checkpoints() / item.name
        places = (*map(Path, item.other_places), home)
        found = next((place for place in places if place.is_file()), None)
        statuses.append(RequiredFileStatus(item.name, found is not None, found or home, places, item.needed_for,
                                           download_command(item.name)))
    return statuses


def _third_party_or_key_error(name: str) -> ThirdPartyFile:
    item = find_third_party(name)
    if item is None:
        raise KeyError(f'no third-party file called {name!r}: one of {", ".join(THIRD_PARTY_FILES)}')
    return item


def download_command(path: str | os.PathLike) -> str | None:
    """The ``basicsr download`` command that provides the file ``path``; None if no command does.

    A release file is fetched into ``--dir`` (the command names it unless it is the default folder);
    a third-party file always goes to torch's hub cache, whatever the path.
    """
    path = Path(path)
    item = find_third_party(path.name)
    if item is not None:
        return f'basicsr download {item.name}'
    release = find_release(path.name)
    if release is None or path.name != release.name:
        return None
    folder = '' if path.parent == Path(PRETRAINED_DIR) else f' --dir {path.parent}'
    return f'basicsr download {release.name}{folder}'
