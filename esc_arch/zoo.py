"""The authors' released weights: what each file is, the options that test it and the paper's scores.

The files are the assets of release 1.0.0 of the authors' repository (``dslisleedh/ESC`` on GitHub),
named as in their options files. ``basicsr download NAME`` fetches them (:mod:`esc_arch.download`) into
``experiments/pretrained_models/``, where the generated test options (``options/test/``) look for them.
The PSNR values are the paper's (Y channel, border = scale), from its Table 2 (DIV2K training) and
Table 4 (DFLIP training); ESC-XL and ESC-Real have no Set5/Urban100 PSNR in the paper.
"""
from dataclasses import dataclass

__all__ = ['RELEASE_URL', 'PRETRAINED_DIR', 'Release', 'RELEASES', 'find_release', 'markdown_table', 'release_names']

RELEASE_URL = 'https://github.com/dslisleedh/ESC/releases/download/1.0.0'
"""Where the release's files are: ``RELEASE_URL/<file name>``."""

PRETRAINED_DIR = 'experiments/pretrained_models'
"""Default folder of downloaded weights, relative to the directory ``basicsr`` runs in (as BasicSR's)."""


@dataclass(frozen=True)
class Release:
    """One released weights file.

    Args:
        name (str): File name in the release (and on disk).
        preset (str): The published configuration it fits (:func:`esc_arch.build_preset`).
        scale (int): Upscaling factor.
        training (str): Training data and stage, as the paper names them.
        options (str): Options file that tests it, relative to the repository root.
        set5_psnr (float | None): The paper's Set5 PSNR (dB), None where the paper has none.
        urban100_psnr (float | None): The paper's Urban100 PSNR (dB), likewise.
        source (str): Where the PSNR values come from.
    """
    name: str
    preset: str
    scale: int
    training: str
    options: str
    set5_psnr: float | None = None
    urban100_psnr: float | None = None
    source: str = ''


NO_PSNR = 'no PSNR in the paper'


def _family(file_pattern: str, preset: str, options_stem: str, training: str, psnr: dict | None = None,
            source: str = NO_PSNR, scales: tuple[int, ...] = (2, 3, 4)) -> list[Release]:
    """One release per scale; ``psnr`` maps a scale to its (Set5, Urban100) PSNR."""
    psnr = psnr or {}
    return [Release(file_pattern.format(scale=scale), preset, scale, training,
                    f'options/test/test_{options_stem}_x{scale}.yml', *psnr.get(scale, (None, None)),
                    source if scale in psnr else NO_PSNR) for scale in scales]


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
    *_family('ESC_Real_X4_GAN.pth', 'ESC-Real', 'ESC_Real', 'DF2K + OST, real-world degradations, GAN stage',
             scales=(4, )),
]}


def release_names() -> list[str]:
    """The file names of every released weights file, in registry order."""
    return list(RELEASES)


def find_release(name: str) -> Release | None:
    """The release called ``name``: its file name, in any case, with or without ``.pth``; None if there is none."""
    wanted = name.lower().removesuffix('.pth')
    return next((release for file_name, release in RELEASES.items()
                 if file_name.lower().removesuffix('.pth') == wanted), None)


def markdown_table() -> str:
    """The README's model-zoo table: one row per released file (``tests/test_download.py`` checks the README)."""
    def psnr(value):
        return '-' if value is None else f'{value:.2f}'

    lines = ['| release file | network | scale | trained on | test options | Set5 PSNR | Urban100 PSNR | source |',
             '|---|---|---|---|---|---|---|---|']
    lines += [f'| `{release.name}` | {release.preset} | x{release.scale} | {release.training} | `{release.options}` | '
              f'{psnr(release.set5_psnr)} | {psnr(release.urban100_psnr)} | {release.source} |'
              for release in RELEASES.values()]
    return '\n'.join(lines)
