"""Bilinear sampling at sub-pixel points, shared by detection, description and the sparse head.

Pixel convention: (x, y) = (column, row), integer = pixel centre, which is what align_corners=True
sampling of a dense map means.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def bilinear_corners(points: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The four integer pixels around each point (N x 4 x 2, (x, y)) and their bilinear weights (N x 4)."""
    x, y = points[:, 0], points[:, 1]
    x0 = x.floor().clamp(0, width - 1)
    y0 = y.floor().clamp(0, height - 1)
    fx, fy = x - x0, y - y0
    x1 = (x0 + 1).clamp(max=width - 1)  # at the last column the weight of x1 is 0 anyway
    y1 = (y0 + 1).clamp(max=height - 1)
    corners = torch.stack(
        (torch.stack((x0, y0), 1), torch.stack((x1, y0), 1), torch.stack((x0, y1), 1), torch.stack((x1, y1), 1)), 1
    ).long()
    weights = torch.stack(((1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy), dim=1)
    return corners, weights


def interpolate(
    values_at: Callable[[torch.Tensor], torch.Tensor], points: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """Bilinear interpolation of any per-pixel quantity: `values_at` maps M x 2 integer pixels to M x C."""
    corners, weights = bilinear_corners(points, height, width)
    values = values_at(corners.reshape(-1, 2))
    values = values.reshape(len(points), 4, values.shape[-1])
    return (weights[..., None] * values).sum(dim=1)


def pixels_of(dense: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """`values_at` for a dense C x H x W map."""
    return lambda px: dense[:, px[:, 1], px[:, 0]].T
