"""Comparison pictures: crops of the most detailed region of an image, upscaled several ways, side by side.

Every panel is the same crop (in output pixels) enlarged with nearest-neighbour interpolation to
``PANEL_SIZE`` pixels, so that single pixels stay visible, under a label bar. An overview panel shows
the whole output with the crop outlined. A caption bar under the panels says how much the crop is
enlarged (and, for :func:`reference_comparison`, that the dB values in the labels are of the whole
image). Pictures are 8-bit BGR arrays, ready for ``cv2.imwrite``.
"""
import cv2
import numpy as np
from torch import nn

__all__ = ['PANEL_SIZE', 'LABEL_HEIGHT', 'CAPTION_HEIGHT', 'GAP', 'CROP_SIZE', 'to_bgr8', 'most_detailed_region',
           'labelled_panel', 'side_by_side', 'stack_rows', 'captioned', 'network_label', 'upscale_comparison',
           'reference_comparison']

PANEL_SIZE = 320
"""Side of a panel in pixels."""
LABEL_HEIGHT = 28
"""Height of the label bar above each panel."""
CAPTION_HEIGHT = 24
"""Height of the caption bar under a row of panels."""
GAP = 4
"""White space between panels and between rows."""
CROP_SIZE = 96
"""Default side of the compared region, in output pixels (enlarged to ``PANEL_SIZE``)."""
_CROP_COLOUR = (0, 0, 255)  # red outline (BGR) of the region in the overview


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """An OpenCV image of any layout (gray, BGR, BGRA) and depth (uint8, uint16, float in [0, 1]) as 8-bit BGR."""
    if image.dtype == np.uint16:
        image = (image.astype(np.float32) / 257).round()
    elif image.dtype != np.uint8:
        image = np.clip(image.astype(np.float32), 0, 1) * 255
        image = image.round()
    image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(image[:, :, :3])  # alpha dropped: the panels compare colour detail


def most_detailed_region(image: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the ``size`` x ``size`` window of ``image`` with the most detail.

    Detail is the mean absolute Laplacian of the luma, where upscalers differ most (edges, texture).

    Args:
        image (ndarray): 8-bit BGR image (see :func:`to_bgr8`).
        size (int): Side of the window; clipped to the image.

    Returns:
        tuple[int, int]: ``(top, left)``.
    """
    height, width = image.shape[:2]
    size_y, size_x = min(size, height), min(size, width)
    luma = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
    detail = np.abs(cv2.Laplacian(luma, cv2.CV_32F))
    window_sums = cv2.integral(detail)  # (H+1, W+1): sums of every window in four lookups
    sums = (window_sums[size_y:, size_x:] - window_sums[:-size_y, size_x:] - window_sums[size_y:, :-size_x]
            + window_sums[:-size_y, :-size_x])
    top, left = np.unravel_index(np.argmax(sums), sums.shape)
    return int(top), int(left)


def labelled_panel(image: np.ndarray, label: str, size: int = PANEL_SIZE) -> np.ndarray:
    """``image`` (8-bit BGR) fitted into a ``size`` x ``size`` panel (nearest neighbour) under a label bar.

    Returns:
        ndarray: ``(LABEL_HEIGHT + size, size, 3)`` uint8.
    """
    height, width = image.shape[:2]
    factor = size / max(height, width)
    fitted = cv2.resize(image, (max(1, round(width * factor)), max(1, round(height * factor))),
                        interpolation=cv2.INTER_NEAREST if factor >= 1 else cv2.INTER_AREA)
    panel = np.full((LABEL_HEIGHT + size, size, 3), 255, np.uint8)
    top, left = LABEL_HEIGHT + (size - fitted.shape[0]) // 2, (size - fitted.shape[1]) // 2
    panel[top:top + fitted.shape[0], left:left + fitted.shape[1]] = fitted
    _put_text(panel, label, LABEL_HEIGHT - 9, size)
    return panel


def _put_text(picture: np.ndarray, text: str, baseline: int, width: int, largest: float = 0.6) -> None:
    """Draw ``text`` in black at ``(4, baseline)``, shrunk to fit ``width`` pixels."""
    font_scale = min(largest, largest * width / max(1, cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, largest,
                                                                      1)[0][0] + 8))
    cv2.putText(picture, text, (4, baseline), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 1, cv2.LINE_AA)


def side_by_side(panels: list[np.ndarray]) -> np.ndarray:
    """Panels of one height in a row, ``GAP`` white pixels apart."""
    height = panels[0].shape[0]
    gap = np.full((height, GAP, 3), 255, np.uint8)
    return np.concatenate([part for panel in panels for part in (panel, gap)][:-1], axis=1)


def stack_rows(rows: list[np.ndarray]) -> np.ndarray:
    """Rows of one width stacked, ``GAP`` white pixels apart."""
    gap = np.full((GAP, rows[0].shape[1], 3), 255, np.uint8)
    return np.concatenate([part for row in rows for part in (row, gap)][:-1], axis=0)


def captioned(picture: np.ndarray, caption: str) -> np.ndarray:
    """``picture`` with a white ``CAPTION_HEIGHT`` bar under it holding ``caption`` (shrunk to fit)."""
    bar = np.full((CAPTION_HEIGHT, picture.shape[1], 3), 255, np.uint8)
    _put_text(bar, caption, CAPTION_HEIGHT - 8, picture.shape[1], largest=0.5)
    return np.concatenate([picture, bar], axis=0)


def _enlargement(crop_height: int, crop_width: int) -> str:
    """How much a crop is enlarged to fill a panel, e.g. ``3.3x``."""
    return f'{PANEL_SIZE / max(crop_height, crop_width):.3g}x'


def network_label(network: nn.Module, scale: float) -> str:
    """The name of the published variant ``network`` is (``ESC-light x4``), from its weights' configuration.

    A network that is no published variant is named by its class (``ESC x2``).
    """
    from esc_arch.archs.introspection import bare_network
    from esc_arch.checkpoint import matching_preset

    bare = bare_network(network)
    config = getattr(bare, 'config', None)
    name = matching_preset(config) if isinstance(config, dict) else None
    return f'{name or type(bare).__name__} x{scale:g}'


def _crop(image: np.ndarray, top: int, left: int, size: int) -> np.ndarray:
    return image[top:top + size, left:left + size]


def upscale_comparison(lr: np.ndarray, sr: np.ndarray, scale: float, sr_label: str,
                       crop_size: int = CROP_SIZE) -> np.ndarray:
    """The picture ``basicsr upscale --compare`` writes: overview | bicubic crop | network crop, and a caption.

    The crop is the most detailed region of the network's output; bicubic is OpenCV's bicubic
    upsampling of ``lr`` to the size of ``sr``; the caption gives the crop's size and enlargement.

    Args:
        lr (ndarray): The input image, any layout and depth.
        sr (ndarray): The network's output (``scale`` times larger).
        scale (float): The upscaling factor, for the labels.
        sr_label (str): Label of the network's panel, e.g. ``ESC-light x4`` (:func:`network_label`).
        crop_size (int): Side of the region in output pixels.

    Returns:
        ndarray: ``(LABEL_HEIGHT + PANEL_SIZE + CAPTION_HEIGHT, 3 * PANEL_SIZE + 2 * GAP, 3)`` uint8 BGR.
    """
    lr, sr = to_bgr8(lr), to_bgr8(sr)
    bicubic = cv2.resize(lr, (sr.shape[1], sr.shape[0]), interpolation=cv2.INTER_CUBIC)
    top, left = most_detailed_region(sr, crop_size)
    overview = sr.copy()
    size_y, size_x = min(crop_size, sr.shape[0]), min(crop_size, sr.shape[1])
    thickness = max(1, round(max(sr.shape[:2]) / PANEL_SIZE))
    cv2.rectangle(overview, (left, top), (left + size_x - 1, top + size_y - 1), _CROP_COLOUR, thickness)
    row = side_by_side([
        labelled_panel(overview, f'output x{scale:g} (crop in red)'),
        labelled_panel(_crop(bicubic, top, left, crop_size), f'bicubic x{scale:g}'),
        labelled_panel(_crop(sr, top, left, crop_size), sr_label),
    ])
    return captioned(row, f'crop: {size_x}x{size_y} output pixels, shown enlarged {_enlargement(size_y, size_x)} '
                     '(nearest neighbour)')


def reference_comparison(lr: np.ndarray, results: dict[str, np.ndarray], hr: np.ndarray, scale: int,
                         crop_size: int = CROP_SIZE, lr_label: str = 'LR input',
                         scores_note: str = 'dB: PSNR of the whole image, not of the crop') -> np.ndarray:
    """One row comparing upscaled images with the ground truth: LR | each result | HR, on one crop, and a caption.

    The crop is the most detailed region of ``hr``, aligned to the scale so that the LR panel shows
    exactly the input pixels of the region.

    Args:
        lr (ndarray): The input image.
        results (dict[str, ndarray]): Label (e.g. ``bicubic 29.38 dB``) -> upscaled image, in panel order.
        hr (ndarray): The ground truth, ``scale`` times the size of ``lr``.
        scale (int): The upscaling factor.
        crop_size (int): Side of the region in HR pixels (rounded down to a multiple of ``scale``).
        lr_label (str): Label of the LR panel.
        scores_note (str): What the scores in the labels are, added to the caption (which gives the
            crop's size and enlargement); empty for labels without scores.

    Returns:
        ndarray: ``(LABEL_HEIGHT + PANEL_SIZE + CAPTION_HEIGHT, n * PANEL_SIZE + (n - 1) * GAP, 3)`` uint8
        BGR with ``n = len(results) + 2``.
    """
    lr, hr = to_bgr8(lr), to_bgr8(hr)
    crop_size = max(scale, min(crop_size, lr.shape[0] * scale, lr.shape[1] * scale) // scale * scale)
    top, left = most_detailed_region(hr[:lr.shape[0] * scale, :lr.shape[1] * scale], crop_size)
    top, left = top // scale * scale, left // scale * scale
    panels = [labelled_panel(_crop(lr, top // scale, left // scale, crop_size // scale), lr_label)]
    panels += [labelled_panel(_crop(to_bgr8(image), top, left, crop_size), label) for label, image in results.items()]
    panels.append(labelled_panel(_crop(hr, top, left, crop_size), 'HR (ground truth)'))
    caption = f'crop: {crop_size}x{crop_size} HR pixels, shown enlarged {_enlargement(crop_size, crop_size)} ' \
              '(nearest neighbour)'
    return captioned(side_by_side(panels), f'{caption}; {scores_note}' if scores_note else caption)
