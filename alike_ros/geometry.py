"""Points under a homography, and which of them an image holds: one pixel convention for training, evaluation
and the bag report. Pixel centres are at integer coordinates, so an image of width W spans x in [-0.5, W - 0.5]."""

from __future__ import annotations

import numpy as np
import torch

Points = np.ndarray | torch.Tensor


def warp_points(h: np.ndarray | torch.Tensor, points: Points) -> Points:
    """Apply the 3x3 homography `h` to N x 2 points (x, y).

    numpy (float64): points sent to infinity or behind the camera come back as inf, so `inside` rejects them.
    torch: differentiable in the points, for training losses (whose homographies keep every point in front)."""
    if isinstance(points, torch.Tensor):
        homog = torch.cat((points, torch.ones_like(points[:, :1])), 1) @ h.T
        return homog[:, :2] / homog[:, 2:]
    points = np.asarray(points, np.float64).reshape(-1, 2)
    homog = np.hstack([points, np.ones((len(points), 1))]) @ np.asarray(h, np.float64).T
    with np.errstate(divide="ignore", invalid="ignore"):
        out = homog[:, :2] / homog[:, 2:]
    out[~np.isfinite(out).all(axis=1) | (homog[:, 2] <= 0)] = np.inf
    return out


def inside(points: Points, size: tuple[int, int], margin: float = 0.0) -> Points:
    """Mask of the N x 2 points on an image of `size` (height, width), at least `margin` px in from its edges.

    margin 0: on a pixel of the image (evaluation's test of visibility); margin 0.5: between the outermost pixel
    centres, where bilinear sampling has all four neighbours (training's)."""
    height, width = size
    x, y = points[:, 0], points[:, 1]
    lo = margin - 0.5
    return (x >= lo) & (x <= width - 1 - lo) & (y >= lo) & (y <= height - 1 - lo)
