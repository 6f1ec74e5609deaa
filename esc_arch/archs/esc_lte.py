"""ESC+LTE: arbitrary-scale super-resolution with the ESC trunk as encoder and an LTE head (paper, Table 6).

The network maps an LR image and a set of output-pixel queries (coordinates and cells, in the
authors' convention) to RGB values, so one set of weights serves any scale, x1.5 as well as x8.
The head is a Local Texture Estimator (Lee and Jin, CVPR 2022): per LR pixel it predicts
amplitudes (``coef``) and frequencies (``freq``); each query mixes the Fourier features of its
four nearest LR pixels, weighted by area, through an MLP (``imnet``), and adds a bilinear
upsampling of the input.

Coordinates: an axis of ``n`` pixels has pixel centres at ``-1 + (2i + 1) / n``; a coordinate is
``(row, column)``; the cell of an output pixel is ``(2 / H_out, 2 / W_out)``.
"""
import math
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from basicsr.utils.registry import ARCH_REGISTRY

from .config import ConfigMixin, records_config
from .trunk import ESCTrunk, require, require_positive_int

__all__ = ['ESCLTE', 'LTEFeatures', 'MLP', 'pixel_centres', 'make_coord', 'make_cell']

_SHIFT_EPS = 1e-6  # the authors' nudge off pixel borders before nearest-neighbour sampling
_AREA_EPS = 1e-9
DEFAULT_QUERY_CHUNK = 30000  # queries per MLP pass in upscale(); the authors' evaluation batch


def pixel_centres(size: int, device: torch.device | str | None = None) -> Tensor:
    """Centres of ``size`` pixels on [-1, 1]: ``-1 + (2i + 1) / size``, computed as the authors do (float32)."""
    half_pixel = 1 / size  # pixels are 2 / size wide
    return -1 + half_pixel + (2 * half_pixel) * torch.arange(size, device=device).float()


def make_coord(height: int, width: int, device: torch.device | str | None = None) -> Tensor:
    """``(height * width, 2)`` (row, column) coordinates of every pixel centre, row-major."""
    rows, cols = pixel_centres(height, device), pixel_centres(width, device)
    return torch.stack(torch.meshgrid(rows, cols, indexing='ij'), dim=-1).view(-1, 2)


def make_cell(height: int, width: int, count: int, device: torch.device | str | None = None) -> Tensor:
    """``(count, 2)`` cells ``(2 / height, 2 / width)`` of pixels of an image of that size."""
    cell = torch.tensor([2 / height, 2 / width], device=device)
    return cell.expand(count, 2).clone()


class MLP(nn.Module):
    """Linear layers with ReLU between them (``layers`` is the Sequential, as in the authors' keys).

    Args:
        in_dim (int): Input features.
        out_dim (int): Output features.
        hidden_list (list[int]): Widths of the hidden layers.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_list: list[int]) -> None:
        super().__init__()
        layers, width = [], in_dim
        for hidden in hidden_list:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, out_dim))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class LTEFeatures:
    """What the head needs from one encoded image: normalised input, amplitudes, frequencies, LR coordinates.

    ``maps`` stacks ``coef`` (C), ``freq`` (C) and the LR pixel-centre coordinates (2) so that each of
    the four nearest-neighbour look-ups of a query is a single ``grid_sample``.
    """

    def __init__(self, normalised: Tensor, coef: Tensor, freq: Tensor) -> None:
        batch, _, height, width = coef.shape
        lr_coord = make_coord(height, width, coef.device).to(coef.dtype).view(height, width, 2).permute(2, 0, 1)
        self.normalised = normalised
        self.maps = torch.cat([coef, freq, lr_coord.unsqueeze(0).expand(batch, -1, -1, -1)], dim=1)
        self.channels = coef.shape[1]
        self.size = (height, width)


@ARCH_REGISTRY.register()
class ESCLTE(ConfigMixin, nn.Module):
    """ESC encoder + LTE head for arbitrary-scale super-resolution (the paper's "ESC+LTE").

    State-dict keys are the authors' (``encoder.*`` = ESC's keys without ``to_img``; ``coef``,
    ``freq``, ``phase``, ``imnet.layers.*``), so their checkpoints load strictly. Any batch size and
    any input size (height and width >= 1) work. It has no scale of its own: the scale is a request
    (:meth:`upscale`). Arguments are keyword-only; ``network.config`` holds them (the published ones
    are the preset ``ESC-LTE``, :data:`esc_arch.archs.presets.PRESETS`).

    Args:
        dim (int): Encoder feature channels. Default: 64.
        pdim (int): Channels ConvAttn acts on. Default: 16.
        kernel_size (int): Side of the shared large kernel. Default: 13.
        n_blocks (int): Encoder blocks. Default: 5.
        conv_blocks (int): ConvAttn layers per block. Default: 5.
        window_size (int): Side of the self-attention windows. Default: 32.
        num_heads (int): Attention heads. Default: 4.
        exp_ratio (float): Expansion of the ConvFFNs beside ConvAttn. Default: 1.25.
        attn_type (str): Attention backend: ``auto``, ``naive``, ``sdpa`` or ``flex``. Default: ``auto``.
        use_ln (bool): LayerNorm before those ConvFFNs. Default: False.
        hidden_dim (int): Channels of ``coef`` and ``freq`` (even; the MLP's input width). Default: 256.
        mlp_hidden (list[int]): Hidden widths of ``imnet``. Default: [256, 256, 256].
        train_scale_max (float): Largest scale seen in training; :meth:`upscale` enlarges the cell of
            larger scales to this scale's ("cell clipping", as the authors evaluate). Default: 4.
    """

    @records_config
    def __init__(self, *, dim: int = 64, pdim: int = 16, kernel_size: int = 13, n_blocks: int = 5,
                 conv_blocks: int = 5, window_size: int = 32, num_heads: int = 4, exp_ratio: float = 1.25,
                 attn_type: str = 'auto', use_ln: bool = False, hidden_dim: int = 256,
                 mlp_hidden: list[int] | tuple[int, ...] = (256, 256, 256), train_scale_max: float = 4.0) -> None:
        super().__init__()
        require_positive_int('hidden_dim', hidden_dim)
        require(hidden_dim % 2 == 0, 'hidden_dim', f'must be even (frequencies come in pairs); got {hidden_dim}')
        mlp_hidden = list(mlp_hidden)
        for width in mlp_hidden:
            require_positive_int('mlp_hidden', width)
        require(train_scale_max > 0, 'train_scale_max', f'must be positive; got {train_scale_max!r}')
        self.encoder = ESCTrunk(dim=dim, pdim=pdim, kernel_size=kernel_size, n_blocks=n_blocks,
                                conv_blocks=conv_blocks, window_size=window_size, num_heads=num_heads,
                                exp_ratio=exp_ratio, attn_type=attn_type, use_ln=use_ln)
        self.coef = nn.Conv2d(dim, hidden_dim, 3, padding=1)
        self.freq = nn.Conv2d(dim, hidden_dim, 3, padding=1)
        self.phase = nn.Linear(2, hidden_dim // 2, bias=False)
        self.imnet = MLP(hidden_dim, 3, mlp_hidden)
        self.hidden_dim, self.mlp_hidden = hidden_dim, mlp_hidden
        self.train_scale_max = float(train_scale_max)
        self.window_size = window_size

    @property
    def attn_type(self) -> str:
        """The encoder's attention backend; assign to switch it."""
        return self.encoder.attn_type

    @attn_type.setter
    def attn_type(self, value: str) -> None:
        self.encoder.attn_type = value

    def convert(self) -> 'ESCLTE':
        """Bake the encoder's kernel re-parameterisation in for deployment (outputs unchanged); returns self."""
        self.encoder.convert()
        return self

    def encode(self, x: Tensor) -> LTEFeatures:
        """Encode a ``(B, 3, h, w)`` image in [0, 1] once, for any number of :meth:`query` calls."""
        normalised = (x - 0.5) / 0.5
        feat = self.encoder(normalised)
        return LTEFeatures(normalised, self.coef(feat), self.freq(feat))

    def query(self, features: LTEFeatures, coord: Tensor, cell: Tensor) -> Tensor:
        """RGB at ``coord`` ``(B, Q, 2)`` for pixels of size ``cell`` ``(B, Q, 2)``: ``(B, Q, 3)`` in [0, 1]-space.

        Not clamped (training compares it with the targets as it is).
        """
        height, width = features.size
        size = coord.new_tensor([height, width])
        channels = features.channels
        rel_cell = cell * size
        batch, queries = coord.shape[:2]
        phase = self.phase(rel_cell)
        preds, areas = [], []
        for shift_row in (-1, 1):
            for shift_col in (-1, 1):
                shift = coord.new_tensor([shift_row / height + _SHIFT_EPS, shift_col / width + _SHIFT_EPS])
                shifted = (coord + shift).clamp_(-1 + _SHIFT_EPS, 1 - _SHIFT_EPS)
                sampled = _sample(features.maps, shifted, 'nearest')
                coef, freq, lr_coord = sampled.split([channels, channels, 2], dim=-1)
                rel = (coord - lr_coord) * size
                # frequency pair k = (freq[2k], freq[2k + 1]) dotted with the offset (row, column)
                angle = (freq.reshape(batch, queries, channels // 2, 2) * rel.unsqueeze(2)).sum(-1) + phase
                basis = torch.cat([torch.cos(math.pi * angle), torch.sin(math.pi * angle)], dim=-1)
                preds.append(self.imnet(coef * basis))
                areas.append((rel[..., 0] * rel[..., 1]).abs() + _AREA_EPS)
        total_area = torch.stack(areas).sum(0)
        # each neighbour is weighted by the area of the diagonally opposite one (bilinear-like)
        out = sum(pred * (area / total_area).unsqueeze(-1) for pred, area in zip(preds, reversed(areas)))
        out = out + _sample(features.normalised, coord, 'bilinear', padding_mode='border')
        return out * 0.5 + 0.5

    def forward(self, x: Tensor, coord: Tensor, cell: Tensor) -> Tensor:
        """Predict the RGB of the queries.

        Args:
            x (Tensor): ``(B, 3, h, w)`` LR images in [0, 1].
            coord (Tensor): ``(B, Q, 2)`` output-pixel centres (row, column) in [-1, 1].
            cell (Tensor): ``(B, Q, 2)`` output-pixel sizes in the same units.

        Returns:
            Tensor: ``(B, Q, 3)`` RGB in [0, 1]-space, not clamped.
        """
        return self.query(self.encode(x), coord, cell)

    def query_cell(self, in_size: tuple[int, int], out_size: tuple[int, int], scale: float | None = None,
                   clip_cell: bool = True) -> Tensor:
        """The cell of output pixels for ``in_size -> out_size``, clipped beyond the training scales.

        With ``clip_cell``, for a scale above ``train_scale_max`` the cell is multiplied by
        ``scale / train_scale_max`` (as the authors evaluate x6 and x8). ``scale`` defaults to the
        larger ratio of the sizes.
        """
        if scale is None:
            scale = max(out_size[0] / in_size[0], out_size[1] / in_size[1])
        factor = max(scale / self.train_scale_max, 1.0) if clip_cell else 1.0
        return torch.tensor([2 / out_size[0], 2 / out_size[1]]) * factor

    @torch.no_grad()
    def upscale(self, x: Tensor, out_size: tuple[int, int], scale: float | None = None,
                chunk_size: int = DEFAULT_QUERY_CHUNK, tile_size: int | None = None, tile_pad: int = 32,
                clip_cell: bool = True, progress: Callable[[int, int], None] | None = None) -> Tensor:
        """Upscale whole images to ``out_size``, querying every output pixel; ``(B, 3, H, W)`` clamped to [0, 1].

        Memory stays bounded: the head runs on ``chunk_size`` pixels at a time, and with ``tile_size``
        the encoder runs on tiles of that many LR pixels plus ``tile_pad`` pixels of context (each
        tile answers the output pixels whose centres fall inside it; with enough context the result
        matches a whole-image pass closely).

        Args:
            x (Tensor): ``(B, 3, h, w)`` images in [0, 1].
            out_size (tuple[int, int]): Output ``(H, W)``.
            scale (float | None): Nominal scale for cell clipping; default: the larger size ratio.
            chunk_size (int): Queries per head pass. Default: 30000.
            tile_size (int | None): LR tile side; None or 0: the whole image at once.
            tile_pad (int): LR context around a tile. Default: 32.
            clip_cell (bool): Enlarge the cell beyond ``train_scale_max`` (see :meth:`query_cell`). Default: True.
            progress (Callable | None): Called as ``progress(done, total)`` after each tile.

        Returns:
            Tensor: ``(B, 3, H, W)``.
        """
        require_positive_int('chunk_size', chunk_size)
        out_h, out_w = (int(side) for side in out_size)
        require(out_h >= 1 and out_w >= 1, 'out_size', f'must be at least 1x1; got {out_size}')
        height, width = x.shape[-2:]
        batch = x.shape[0]
        cell = self.query_cell((height, width), (out_h, out_w), scale, clip_cell).to(x)
        coord = make_coord(out_h, out_w, x.device).to(x.dtype)
        if not tile_size or (tile_size >= height and tile_size >= width):
            out = self._query_chunked(self.encode(x), coord, cell, batch, chunk_size)
            return out.clamp_(0, 1).view(batch, out_h, out_w, 3).permute(0, 3, 1, 2)
        require(tile_pad >= 1, 'tile_pad', f'must be at least 1 (the head looks one LR pixel around); got {tile_pad}')
        out = x.new_empty(batch, out_h * out_w, 3)
        # LR position (in pixels) of every output-pixel centre, per axis
        row_pos = (coord.view(out_h, out_w, 2)[:, 0, 0] + 1) / 2 * height
        col_pos = (coord.view(out_h, out_w, 2)[0, :, 1] + 1) / 2 * width
        corners = [(top, left) for top in range(0, height, tile_size) for left in range(0, width, tile_size)]
        for done, (top, left) in enumerate(corners, 1):
            rows = _inside(row_pos, top, min(top + tile_size, height))
            cols = _inside(col_pos, left, min(left + tile_size, width))
            if len(rows) and len(cols):
                in_top, in_left = max(top - tile_pad, 0), max(left - tile_pad, 0)
                in_bottom = min(top + tile_size + tile_pad, height)
                in_right = min(left + tile_size + tile_pad, width)
                features = self.encode(x[..., in_top:in_bottom, in_left:in_right])
                tile_h, tile_w = in_bottom - in_top, in_right - in_left
                # the same output centres and cells, in the tile's own [-1, 1] frame
                tile_rows = (row_pos[rows] - in_top) / tile_h * 2 - 1
                tile_cols = (col_pos[cols] - in_left) / tile_w * 2 - 1
                tile_coord = torch.stack(torch.meshgrid(tile_rows, tile_cols, indexing='ij'), -1).view(-1, 2)
                tile_cell = cell * cell.new_tensor([height / tile_h, width / tile_w])
                pred = self._query_chunked(features, tile_coord, tile_cell, batch, chunk_size)
                index = (rows[:, None] * out_w + cols[None, :]).view(-1)
                out[:, index] = pred
            if progress is not None:
                progress(done, len(corners))
        return out.clamp_(0, 1).view(batch, out_h, out_w, 3).permute(0, 3, 1, 2)

    def _query_chunked(self, features: LTEFeatures, coord: Tensor, cell: Tensor, batch: int, chunk_size: int) -> Tensor:
        """Query the same ``(Q, 2)`` coordinates and one cell for every image, ``chunk_size`` at a time."""
        outputs = []
        for start in range(0, coord.shape[0], chunk_size):
            part = coord[start:start + chunk_size].unsqueeze(0).expand(batch, -1, -1)
            outputs.append(self.query(features, part, cell.expand_as(part)))
        return torch.cat(outputs, dim=1)

    def extra_repr(self) -> str:
        return f'hidden_dim={self.hidden_dim}, mlp_hidden={self.mlp_hidden}, train_scale_max={self.train_scale_max}'


def _sample(maps: Tensor, coord: Tensor, mode: str, padding_mode: str = 'zeros') -> Tensor:
    """``maps`` ``(B, C, h, w)`` at ``coord`` ``(B, Q, 2)`` (row, column): ``(B, Q, C)``."""
    grid = coord.flip(-1).unsqueeze(1)  # grid_sample takes (x, y) = (column, row)
    sampled = F.grid_sample(maps, grid, mode=mode, padding_mode=padding_mode, align_corners=False)
    return sampled[:, :, 0, :].transpose(1, 2)


def _inside(positions: Tensor, start: int, stop: int) -> Tensor:
    """Indices of the ``positions`` that fall in the LR pixel range ``[start, stop)``."""
    return torch.nonzero((positions >= start) & (positions < stop)).view(-1)
