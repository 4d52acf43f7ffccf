"""UnsuperPoint's losses (`shared/papers/unsuperpoint_notes.txt`), which `unsuperpoint` (training.unsuperpoint)
trains with, for one pair: view B is view A under the homography H.

Every cell keypoint of A that B sees is warped into B and paired with B's nearest keypoint when that is within
`correspondence_px` (not one-to-one: the notes' "match may not be injective"). Over those K pairs, with d_k
their distance and s their scores:

- position: sum d_k;  score: sum (s_a - s_b)²;
- matching: sum (s_a + s_b)/2 · (d_k - d̄): a pair closer than the mean distance lowers the loss by scoring
  high, a farther one by scoring low, so the score learns which points come back under the warp;
- uniform: per view and per axis, the sorted in-cell offsets against evenly spaced values in [0, 1], sum of
  squares (without it the offsets crowd at the cell borders, where the position loss pulls them);
- descriptor: SuperPoint's hinge over all pairs of keypoints, positives within `descriptor_px`,
  λ_d·max(0, m_p - a·b) for them and max(0, a·b - m_n) for the rest; or (`descriptor_loss: triplet`, not the
  notes', what the bundled weights trained with since issue 27) a triplet against the hardest of a random
  negative pool: the hinge left the descriptor about 4 dimensions (TRAINING.md);
- decorrelation: per view, the squared off-diagonal entries of the D x D correlation matrix of the
  descriptors (L2-Net's).

The paper's weights with its sums; the total is divided by the number of cells of a view, so its scale does not
depend on the crop size (Adam hardly notices a constant factor; gradient clipping does).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..geometry import inside, warp_points
from .losses import triplet_loss


@dataclass(frozen=True)
class UnsuperPointLossConfig:
    correspondence_px: float = 4.0  # the paper's epsilon
    w_usp: float = 1.0  # the point-pair losses together (position, score, matching)
    w_position: float = 1.0
    w_score: float = 2.0
    w_matching: float = 1.0  # 0: the ablation without the matching loss
    centred: bool = True  # False: s·d instead of s·(d - d̄), the ablation that lets scores fall to 0
    w_uniform: float = 100.0
    w_descriptor: float = 0.001
    positive_weight: float = 250.0  # lambda_d
    positive_margin: float = 1.0
    negative_margin: float = 0.2
    descriptor_px: float = 8.0
    w_decorrelation: float = 0.03
    # "hinge": the notes' (SuperPoint's). "triplet": not the notes' - the hardest-negative triplet on L2 distances
    # (training.losses.triplet_loss; negatives farther than descriptor_px), which the bundled weights use (issue
    # 27). Its mean over the pairs enters as a sum over cells, as the other losses do: weigh it with w_descriptor ~ 1
    descriptor_loss: str = "hinge"
    triplet_margin: float = 1.0
    negative_pool: int = 0  # triplet only; > 0: the hardest of about this many random negatives (mdnet's fix)

    def __post_init__(self):
        if self.descriptor_loss not in ("hinge", "triplet"):
            raise ValueError(f"unsuperpoint_loss.descriptor_loss: hinge or triplet, not {self.descriptor_loss!r}")
        if self.negative_pool < 0:
            raise ValueError(f"unsuperpoint_loss.negative_pool must be >= 0, got {self.negative_pool}")


def uniform_loss(offsets: torch.Tensor) -> torch.Tensor:
    """Sum over both axes of the squared distance between the sorted N x 2 offsets and N even steps over [0, 1]."""
    even = torch.linspace(0, 1, len(offsets), dtype=offsets.dtype)
    return ((offsets.sort(0).values - even[:, None]) ** 2).sum()


def descriptor_loss(da: torch.Tensor, db: torch.Tensor, positive: torch.Tensor, cfg: UnsuperPointLossConfig):
    """SuperPoint's hinge loss, summed over all Na x Nb pairs of unit descriptors; `positive` marks true pairs."""
    dot = da @ db.T
    pos = cfg.positive_weight * F.relu(cfg.positive_margin - dot)
    neg = F.relu(dot - cfg.negative_margin)
    return torch.where(positive, pos, neg).sum()


def decorrelation_loss(descriptors: torch.Tensor) -> torch.Tensor:
    """Sum of the squared off-diagonal correlations between the D dimensions over N descriptors."""
    centred = descriptors - descriptors.mean(0)
    unit = centred / centred.norm(dim=0).clamp_min(1e-8)
    correlation = unit.T @ unit
    return (correlation**2).sum() - (correlation.diagonal() ** 2).sum()


def pair_descriptor_loss(
    da: torch.Tensor,
    db: torch.Tensor,
    pb: torch.Tensor,
    warped_a: torch.Tensor,
    pixels: torch.Tensor,
    cells: int,
    cfg: UnsuperPointLossConfig,
) -> torch.Tensor:
    """The notes' hinge over all pairs, or the triplet's mean over A's points scaled to a sum over the cells
    (the total is divided by them); `warped_a` are A's points in B, `pixels` their distances to B's points."""
    if cfg.descriptor_loss == "hinge":
        return descriptor_loss(da, db, pixels <= cfg.descriptor_px, cfg)
    return triplet_loss(da, db, pb, warped_a, cfg.triplet_margin, cfg.descriptor_px, cfg.negative_pool) * cells


def pair_losses(a, b, h_ab: torch.Tensor, size: int, cfg: UnsuperPointLossConfig) -> dict[str, torch.Tensor]:
    """Every loss of one pair; `a`, `b` are one view's scores N, points N x 2, descriptors N x D, offsets N x 2
    (tuples, as `CellKeypoints` holds them per image)."""
    (sa, pa, da, oa), (sb, pb, db, ob) = a, b
    warped = warp_points(h_ab, pa)
    seen = inside(warped.detach(), (size, size), margin=0.5)
    warped, sa, da = warped[seen], sa[seen], da[seen]
    pixels = torch.cdist(warped.detach(), pb.detach())  # for pairing only: its matrix-product path is not exact
    distance, nearest = pixels.min(1)
    paired = distance < cfg.correspondence_px
    d = (warped[paired] - pb[nearest[paired]]).norm(dim=1)
    s_a, s_b = sa[paired], sb[nearest[paired]]
    zero = pa.new_zeros(())
    losses = {
        "position": d.sum(),
        "score": ((s_a - s_b) ** 2).sum(),
        "matching": ((s_a + s_b) / 2 * (d - d.mean() if cfg.centred else d)).sum() if len(d) else zero,
        "uniform": uniform_loss(oa) + uniform_loss(ob),
        "descriptor": pair_descriptor_loss(da, db, pb, warped.detach(), pixels, len(pa), cfg),
        "decorrelation": decorrelation_loss(da) + decorrelation_loss(db),
    }
    point_pairs = cfg.w_position * losses["position"] + cfg.w_score * losses["score"]
    point_pairs = point_pairs + cfg.w_matching * losses["matching"]
    total = cfg.w_usp * point_pairs + cfg.w_uniform * losses["uniform"]
    total = total + cfg.w_descriptor * losses["descriptor"] + cfg.w_decorrelation * losses["decorrelation"]
    cells = len(pa)
    return {"total": total / cells, **{k: v.detach() / cells for k, v in losses.items()}}
