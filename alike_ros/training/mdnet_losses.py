"""MD-Net's losses (Santellani et al., ICPR 2022), which `mdnet` (training.mdnet) trains alike-t's network with.

MD-Net (`shared/papers/mdnet_slides.txt`) learns keypoints without any ground-truth keypoint, from pairs with a
known warp. Its detection losses are R2D2's, which it builds on:

- similarity: 1 - cosine similarity between each 16 x 16 patch (stride 8) of one view's score map and the
  same patch of the other view's score map warped into it; only patches the other view sees entirely count;
- peaky: 1 - (max - mean) of the score map in the 17 x 17 window around every pixel (R2D2's N + 1 window, so
  it has a centre), averaged over both views.

Description: the triplet loss [m - S(a, p) + S(a, n)]+ on cosine scores with m = 0.5. The positive of an anchor of
view 0 is view 1's descriptor at its true position; the negative is the hardest (most similar) of view 1's
candidates farther than `negative_radius` px from it: every other anchor's positive, and as many points of view 1
(with `negative_pool: k`, the hardest of about k of those drawn at random for each anchor). The slides say anchors
are "randomly sampled" keypoints and leave open where: `anchors: random` takes random positions anywhere in view 0
(and random points of view 1), `anchors: peaks` the strongest NMS peaks of view 0's score map (and of view 1's),
the points matching will compare at run time (TRAINING.md measures both).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..detection.dkd import DetectorConfig, describe_dense, detect
from ..geometry import inside, warp_points
from .losses import outside_random_pool


@dataclass(frozen=True)
class MdnetConfig:
    patch: int = 16  # px: similarity patches and peaky windows (the slides' 16 x 16)
    w_similarity: float = 1.0
    w_peaky: float = 1.0  # R2D2: 0.5 per view, i.e. 1 for the mean of both
    w_triplet: float = 1.0
    margin: float = 0.5  # on cosine scores in [-1, 1]
    anchors: int = 512  # per pair and direction
    anchor_sampling: str = "random"  # "random": anywhere in the view; "peaks": the strongest score-map peaks
    negative_radius: float = 8.0  # px around the positive where no negative is taken
    # > 0: each anchor's negative is the hardest of about this many candidates drawn at random (the slides' "set of
    # non matching descriptors sampled randomly"); 0: the hardest of all of them. Against the hardest of all, a
    # collapsed descriptor (every score equal: loss = margin) beats every early descriptor (TRAINING.md)
    negative_pool: int = 0
    # Before a new run, project the direction all descriptors share out of the head (training.mdnet): at a shared
    # direction the triplet's gradient vanishes, and the descriptors stay collapsed (TRAINING.md)
    centre_init: bool = False

    def __post_init__(self):
        if self.anchor_sampling not in ("random", "peaks"):
            raise ValueError(f"mdnet.anchor_sampling must be random or peaks, got {self.anchor_sampling!r}")
        if self.negative_pool < 0:
            raise ValueError(f"mdnet.negative_pool must be >= 0 (0: every candidate), got {self.negative_pool}")


def similarity_loss(scores: torch.Tensor, warped: torch.Tensor, seen: torch.Tensor, patch: int) -> torch.Tensor:
    """1 - mean cosine similarity of the patches (stride half a patch, as R2D2) of two 1 x 1 x H x W score maps,
    over the patches that `seen` (1 x 1 x H x W) covers entirely."""
    a, b, valid = (F.unfold(x, patch, stride=patch // 2) for x in (scores, warped, seen.float()))
    valid = valid.amin(1) > 0
    if not valid.any():
        return scores.new_zeros(())
    cosine = (F.normalize(a, dim=1) * F.normalize(b, dim=1)).sum(1)
    return 1 - cosine[valid].mean()


def peaky_loss(scores: torch.Tensor, patch: int) -> torch.Tensor:
    """1 - mean (max - mean) of a B x 1 x H x W score map in the (patch + 1)² window around each pixel."""
    window = patch + 1
    peak = F.max_pool2d(scores, window, stride=1, padding=patch // 2)
    mean = F.avg_pool2d(scores, window, stride=1, padding=patch // 2, count_include_pad=False)
    return 1 - (peak - mean).mean()


def triplet_loss(
    desc0: torch.Tensor,
    desc1: torch.Tensor,
    h01: torch.Tensor,
    cfg: MdnetConfig,
    scores: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """MD-Net's triplet loss from view 0 to view 1 of one pair; descriptor maps D x H x W, unit per pixel, and
    (for `anchor_sampling: peaks`) the two views' H x W score maps. Random positions are drawn from torch's
    global generator (seeded, and saved in checkpoints)."""
    _, height, width = desc0.shape
    if cfg.anchor_sampling == "peaks":
        strongest = DetectorConfig.strongest(cfg.anchors)
        anchors, candidates = (detect(s.detach(), strongest)[0] for s in scores)
    else:
        size = torch.tensor([width - 1, height - 1], dtype=torch.float32)
        anchors, candidates = torch.rand(cfg.anchors, 2) * size, torch.rand(cfg.anchors, 2) * size
    truth = warp_points(h01, anchors)
    seen = inside(truth, (height, width), margin=0.5)
    anchors, truth = anchors[seen], truth[seen]
    if len(anchors) < 2:
        return desc0.new_zeros(())
    others = torch.cat((truth, candidates))
    a, described = describe_dense(desc0, anchors), describe_dense(desc1, others)
    similarity = a @ described.T  # column i < len(truth) is anchor i's positive
    positive = similarity.diagonal()
    excluded = torch.cdist(truth, others) < cfg.negative_radius
    if cfg.negative_pool > 0:
        excluded |= outside_random_pool(similarity.shape, cfg.negative_pool)
    negative = similarity.masked_fill(excluded, -2.0).max(1).values
    return F.relu(cfg.margin - positive + negative).mean()
