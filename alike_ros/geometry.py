"""Points under a homography, and which of them an image holds: one pixel convention for training, evaluation
and the bag report. Pixel centres are at integer coordinates, so an image of width W spans x in [-0.5, W - 0.5]."""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

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


def tilt_homography(size: tuple[int, int], tilt_deg: float, axis_deg: float) -> np.ndarray:
    """A plane seen fronto-parallel by a camera of focal length max(h, w) (a 53-degree view), then rotated by
    `tilt_deg` about an in-plane axis through the image centre at `axis_deg` from the x axis: the out-of-plane
    viewpoint change of graf-like pairs. Maps pixels of the first view to the second (both of `size`)."""
    height, width = size
    f = float(max(height, width))
    cx, cy = (width - 1) / 2, (height - 1) / 2
    camera = np.array([[f, 0, cx], [0, f, cy], [0, 0, 1]])
    axis = np.deg2rad(axis_deg)
    rotation, _ = cv2.Rodrigues(np.array([np.cos(axis), np.sin(axis), 0.0]) * np.deg2rad(tilt_deg))
    plane_to_camera = np.c_[rotation[:, :2], [0.0, 0.0, f]]  # plane point (X, Y, 1) -> camera coordinates
    pixel_to_plane = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]], np.float64)
    h = camera @ plane_to_camera @ pixel_to_plane
    return h / h[2, 2]


def warp_map(values: torch.Tensor, h_to_other: torch.Tensor) -> torch.Tensor:
    """A 1 x H x W map of the other view resampled at this view's pixels (H maps this view to the other)."""
    _, height, width = values.shape
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32), indexing="ij"
    )
    there = warp_points(h_to_other, torch.stack((xs.flatten(), ys.flatten()), 1))
    grid = torch.stack((there[:, 0] / (width - 1), there[:, 1] / (height - 1)), 1) * 2 - 1
    return F.grid_sample(values[None], grid.view(1, height, width, 2), align_corners=True)[0]
