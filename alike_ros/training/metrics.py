"""Validation figures every family's task shares: repeatability and mutual-NN matching of a homography pair, and
the signs of a collapsing descriptor."""

from __future__ import annotations

import numpy as np
import torch

from ..geometry import inside, warp_points
from .losses import mutual_matches


def pair_metrics(
    k0: torch.Tensor, f0: torch.Tensor, k1: torch.Tensor, f1: torch.Tensor, h01: torch.Tensor, size: int, px: float
) -> dict[str, float]:
    """Repeatability of two keypoint sets (both directions) and mutual-NN matching of their unit descriptors
    (precision and count of matches within `px` of the truth) on a size x size pair; and two signs of collapse:
    the descriptors' mean cosine (near 1: one shared direction) and their effective dimensions (few: a subspace)."""
    w01, w10 = warp_points(h01, k0), warp_points(torch.linalg.inv(h01), k1)
    vis0, vis1 = inside(w01, (size, size), margin=0.5), inside(w10, (size, size), margin=0.5)
    rep = []
    if vis0.any() and vis1.any():
        rep = [
            (torch.cdist(w01[vis0], k1).min(1).values < px).float().mean().item(),
            (torch.cdist(w10[vis1], k0).min(1).values < px).float().mean().item(),
        ]
    i, j = mutual_matches(-(f0 @ f1.T))
    correct = (w01[i] - k1[j]).norm(dim=1) < px
    return {
        "repeatability": float(np.mean(rep)) if rep else 0.0,
        "match_precision": correct.float().mean().item() if len(i) else 0.0,
        "correct_matches": float(correct.sum()),
        "descriptor_mean_cos": mean_cosine(torch.cat((f0, f1))) if len(f0) + len(f1) else 0.0,
        "descriptor_dims": effective_dimensions(torch.cat((f0, f1))) if len(f0) + len(f1) > 1 else 0.0,
    }


def mean_cosine(desc: torch.Tensor) -> float:
    """Mean cosine similarity of the rows of an N x D matrix to each other (self-pairs included)."""
    unit = torch.nn.functional.normalize(desc.detach(), dim=1)
    return float((unit.mean(0) ** 2).sum())


def effective_dimensions(desc: torch.Tensor) -> float:
    """The participation ratio (sum λ)² / sum λ² of the eigenvalues λ of the covariance of N x D descriptors: D when
    every direction varies equally, 1 when they vary along one line."""
    variances = torch.linalg.svdvals(desc.detach() - desc.detach().mean(0)) ** 2
    return float(variances.sum() ** 2 / (variances**2).sum().clamp_min(1e-12))
