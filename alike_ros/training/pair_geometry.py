"""Where a point of one view of a training pair lies in the other: through a homography (synthetic pairs, every
point known) or through depth and calibrated cameras (real pairs, known only where the depth map is and the other
view's depth agrees). The losses read pairs through `to_other` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from ..geometry import inside, warp_points


class PairGeometry(Protocol):
    def to_other(self, points: torch.Tensor, view: int) -> tuple[torch.Tensor, torch.Tensor]:
        """N x 2 pixels of view `view` (0 or 1) -> their N x 2 pixels in the other view (differentiable in the points)
        and which of them are known: a known point lies at its pixel, or, where that is outside the other view,
        is out of view; an unknown one must be left out of every loss."""


@dataclass
class HomographyPair:
    h01: torch.Tensor  # 3 x 3, view 0 -> view 1

    def to_other(self, points: torch.Tensor, view: int) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.h01 if view == 0 else torch.linalg.inv(self.h01)
        return warp_points(h, points), torch.ones(len(points), dtype=torch.bool, device=points.device)


@dataclass
class DepthPair:
    """Two views of a calibrated scene (crops of them: K may hold any affine pixel transform on top)."""

    K0: torch.Tensor  # 3 x 3, camera coordinates -> pixels of view 0
    K1: torch.Tensor
    R01: torch.Tensor  # X_1 = R01 X_0 + t01
    t01: torch.Tensor
    depth0: torch.Tensor  # H x W, 0 = unknown
    depth1: torch.Tensor
    # the other view's depth must agree within this fraction, else the point is occluded there (or the maps are
    # wrong): unknown either way
    tolerance: float = 0.03

    def to_other(self, points: torch.Tensor, view: int) -> tuple[torch.Tensor, torch.Tensor]:
        if view == 0:
            k, k_other, r, t, depth, depth_other = self.K0, self.K1, self.R01, self.t01, self.depth0, self.depth1
        else:
            r = self.R01.T
            k, k_other, t, depth, depth_other = self.K1, self.K0, -r @ self.t01, self.depth1, self.depth0
        z = nearest(depth, points.detach())
        rays = torch.cat((points, torch.ones_like(points[:, :1])), 1) @ torch.linalg.inv(k).T
        there = (rays * z[:, None]) @ r.T + t
        z_there = there[:, 2]
        known = (z > 0) & (z_there > 0)
        # unknown points get a harmless depth, so neither their pixels nor their gradients are inf or nan
        homog = there @ k_other.T
        pixels = homog[:, :2] / torch.where(known, z_there, torch.ones_like(z_there))[:, None]
        in_view = known & inside(pixels.detach(), depth_other.shape, margin=0.5)
        seen = nearest(depth_other, pixels.detach())
        agrees = (seen - z_there).abs() <= self.tolerance * z_there
        return pixels, known & (~in_view | agrees)


def nearest(depth: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """The map's value at the pixel nearest each point (0 outside the map): depth is not interpolated across the
    edges of surfaces."""
    height, width = depth.shape
    px = points.round()
    ok = torch.isfinite(px).all(1) & (px[:, 0] >= 0) & (px[:, 0] < width) & (px[:, 1] >= 0) & (px[:, 1] < height)
    px = torch.where(ok[:, None], px, torch.zeros_like(px)).long()
    return torch.where(ok, depth[px[:, 1], px[:, 0]], torch.zeros_like(px[:, 0], dtype=depth.dtype))


def as_geometry(pair: PairGeometry | torch.Tensor) -> PairGeometry:
    """A 3 x 3 tensor is a homography pair (what the losses took before real pairs)."""
    return HomographyPair(pair) if isinstance(pair, torch.Tensor) else pair


def geometry_of(batch: dict[str, torch.Tensor], i: int) -> PairGeometry:
    """Pair i of a collated batch: homography pairs carry "H", real pairs their cameras and depth maps."""
    if "H" in batch:
        return HomographyPair(batch["H"][i])
    return DepthPair(*(batch[k][i] for k in ("K0", "K1", "R01", "t01", "depth0", "depth1")))
