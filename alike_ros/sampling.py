"""Bilinear sampling at sub-pixel points, shared by detection, description and the sparse head.

Pixel convention: (x, y) = (column, row), integer = pixel centre, which is what align_corners=True
sampling of a dense map means.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def _corner_pixels(points: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The corners of `bilinear_corners` corner-major: 4N x 2 pixels (a view) and 4 x N weights.

    Built by stacking along a new first dimension only: stacking along the second, as a point-major layout
    needs, copies element by element and cost more than all the arithmetic here."""
    x, y = points[:, 0], points[:, 1]
    x0 = x.floor().clamp(0, width - 1)
    y0 = y.floor().clamp(0, height - 1)
    fx, fy = x - x0, y - y0
    x1 = (x0 + 1).clamp(max=width - 1)  # at the last column the weight of x1 is 0 anyway
    y1 = (y0 + 1).clamp(max=height - 1)
    gx, gy = 1 - fx, 1 - fy
    # rows: the x of the four corners, then their y; corner k of point n is pixel k * N + n
    pixels = torch.stack((x0, x1, x0, x1, y0, y0, y1, y1)).long().view(2, -1).T
    return pixels, torch.stack((gx * gy, fx * gy, gx * fy, fx * fy))


def bilinear_corners(points: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The four integer pixels around each point (N x 4 x 2, (x, y)) and their bilinear weights (N x 4)."""
    pixels, weights = _corner_pixels(points, height, width)
    return pixels.view(4, len(points), 2).transpose(0, 1), weights.T


def interpolate(
    values_at: Callable[[torch.Tensor], torch.Tensor], points: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """Bilinear interpolation of any per-pixel quantity: `values_at` maps M x 2 integer pixels to M x C."""
    pixels, weights = _corner_pixels(points, height, width)
    values = values_at(pixels)
    values = values.reshape(4, len(points), values.shape[-1])
    return (weights[..., None] * values).sum(dim=0)


def pixels_of(dense: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """`values_at` for a dense C x H x W map: one gather of whole pixels (rows of C values) where the map is
    stored channels-last, of flat columns otherwise; never a copy of the map."""
    c, h, w = dense.shape
    per_pixel = dense.permute(1, 2, 0)
    if per_pixel.is_contiguous():
        table = per_pixel.view(h * w, c)
        return lambda px: table.index_select(0, px[:, 1] * w + px[:, 0])
    if dense.is_contiguous():
        flat = dense.view(c, h * w)
        return lambda px: flat.index_select(1, px[:, 1] * w + px[:, 0]).T
    return lambda px: dense[:, px[:, 1], px[:, 0]].T


def at_cells(dense: torch.Tensor, points: torch.Tensor, stride: int) -> torch.Tensor:
    """Bilinear samples (N x C) of a C x h x w map whose cells each cover stride x stride pixels of the image, at
    N image points (x, y); cell i's centre is at pixel stride * i + (stride - 1) / 2. Outside the outermost cell
    centres the samples fade towards zero, which only scales a descriptor that is normalised afterwards."""
    _, hc, wc = dense.shape
    # pixel (x, y) with centres at integers -> grid_sample's [-1, 1] over the map's extent (align_corners=False)
    grid = torch.stack(((points[:, 0] + 0.5) / (stride * wc), (points[:, 1] + 0.5) / (stride * hc)), 1) * 2 - 1
    return F.grid_sample(dense[None], grid[None, None].to(dense.dtype), align_corners=False)[0, :, 0].T
