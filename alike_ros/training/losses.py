"""The ALIKE training losses (Zhao et al. 2022), each on one image pair: related by a homography H (0 -> 1), or
by depth and cameras (`pair_geometry`), where only the points with a known ground truth take part.

Keypoints are pixels (x, y) of each view; both views are h x w. Ground-truth locations are computed from
detached keypoints, so descriptor and reliability losses train the maps, not the keypoint positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..geometry import inside
from ..sampling import bilinear_corners, interpolate, pixels_of
from .detection import SoftKeypoints
from .pair_geometry import PairGeometry, as_geometry

RELIABILITIES = ("similarity", "probability")


@dataclass
class LossConfig:
    w_rp: float = 1.0  # reprojection
    w_pk: float = 0.5  # dispersity peak
    w_ds: float = 5.0  # NRE descriptor
    w_sp: float = 1.0  # reliability (score map weighted by the matching probability)
    w_tr: float = 0.0  # optional triplet
    w_cal: float = 0.0  # score calibration (ours, not the paper's): see calibration_loss
    calibration_px: float = 3.0  # a match is correct within this distance, as in validation and evaluation
    t_des: float = 0.02
    t_rel: float = 1.0
    # what the reliability reads at a keypoint's ground truth: "similarity", exp((s_gt - 1) / t_rel), high for a
    # descriptor that survives the warp; "probability", the matching probability softmax(s / t_rel) over every
    # pixel of the other image (the paper's "normalised similarity map"), also low where other pixels look alike
    reliability: str = "similarity"
    score_threshold: float = 0.1  # keypoints below this score are left out of the peak and reprojection losses
    match_threshold: float = 5.0  # pixels; mutual nearest warped keypoints farther apart are no correspondence
    reprojection_norm: int = 1  # 1: L1, 2: L2 distance
    outside_bin: bool = True  # NRE: keypoints warped out of view must match an extra "outside" bin
    triplet_margin: float = 1.0
    triplet_radius: float = 5.0  # pixels; closer negatives are not negatives

    def __post_init__(self) -> None:
        if self.reliability not in RELIABILITIES:
            raise ValueError(f"loss.reliability must be one of {', '.join(RELIABILITIES)}; got {self.reliability!r}")


def clamp_to_view(points: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Points moved inside the image, so bilinear weights stay in [0, 1] even for points out of view."""
    return torch.stack((points[:, 0].clamp(0, width - 1), points[:, 1].clamp(0, height - 1)), 1)


def mutual_matches(dist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (i, j) where column j is row i's nearest and row i is column j's nearest."""
    if dist.numel() == 0:
        empty = torch.zeros(0, dtype=torch.long, device=dist.device)
        return empty, empty
    j = dist.argmin(1)
    i = torch.arange(len(dist), device=dist.device)
    mutual = dist.argmin(0)[j] == i
    return i[mutual], j[mutual]


def reprojection_loss(
    kp0: torch.Tensor,
    kp1: torch.Tensor,
    pair: PairGeometry | torch.Tensor,
    height: int,
    width: int,
    threshold: float,
    keep0: torch.Tensor | None = None,
    keep1: torch.Tensor | None = None,
    norm: int = 1,
) -> tuple[torch.Tensor, int]:
    """Mean symmetric reprojection distance of mutually nearest warped keypoints closer than `threshold`
    (pixels), and the number of such pairs. `keep0/1` optionally exclude keypoints (e.g. low scores); keypoints
    whose ground truth is unknown (`pair_geometry`) are left out. `pair`: a PairGeometry or a 3 x 3 homography."""
    pair = as_geometry(pair)
    (w01, known0), (w10, known1) = pair.to_other(kp0, 0), pair.to_other(kp1, 1)
    ok0 = known0 & inside(w01, (height, width), margin=0.5)
    ok1 = known1 & inside(w10, (height, width), margin=0.5)
    if keep0 is not None:
        ok0 &= keep0
    if keep1 is not None:
        ok1 &= keep1
    kp0, w01, kp1, w10 = kp0[ok0], w01[ok0], kp1[ok1], w10[ok1]
    dist = (torch.cdist(kp0, w10) + torch.cdist(w01, kp1)) / 2
    i, j = mutual_matches(dist.detach())
    close = dist.detach()[i, j] < threshold
    i, j = i[close], j[close]
    if len(i) == 0:
        return kp0.new_zeros(()), 0
    p = float(norm)
    err = ((kp0[i] - w10[j]).norm(p=p, dim=1) + (w01[i] - kp1[j]).norm(p=p, dim=1)) / 2
    return err.mean(), len(i)


def peaky_loss(dispersity: torch.Tensor, scores: torch.Tensor, score_threshold: float) -> torch.Tensor:
    """Mean score dispersity of the keypoints scoring above the threshold: low for sharp, single-pixel peaks."""
    keep = scores.detach() > score_threshold
    if not keep.any():
        return dispersity.new_zeros(())
    return dispersity[keep].mean()


def similarity_map(descriptors: torch.Tensor, descriptor_map: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of N unit descriptors with every pixel of a D x H x W unit descriptor map: N x H*W."""
    return descriptors @ descriptor_map.flatten(1)


def similarity_at(
    descriptors: torch.Tensor, descriptor_map: torch.Tensor, points: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Similarity of descriptor i with the map at the 4 pixels around point i (N x 4) and their bilinear
    weights (N x 4): gathering D-vectors costs far less than indexing (and back-propagating into) N x H*W."""
    _, height, width = descriptor_map.shape
    corners, weights = bilinear_corners(points, height, width)
    at = descriptor_map[:, corners[..., 1], corners[..., 0]]  # D x N x 4
    return torch.einsum("nd,dnk->nk", descriptors, at), weights


def nre_loss(
    sim: torch.Tensor,
    sim_gt: torch.Tensor,
    weights_gt: torch.Tensor,
    visible: torch.Tensor,
    temperature: float,
    outside_bin: bool,
) -> torch.Tensor:
    """Neural reprojection error: -log of the matching probability (softmax of (sim - 1) / t over every pixel
    of the other image, `sim` N x H*W) at the ground-truth location, mixed bilinearly from the similarities
    `sim_gt` at its 4 corner pixels with `weights_gt`. With `outside_bin`, keypoints that are not `visible`
    in the other image must instead match an extra bin of similarity 1."""
    # the constant -1 of (sim - 1) / t cancels in the softmax; it only fixes the outside bin's logit at 1 / t
    lse = torch.logsumexp(sim / temperature, dim=1)
    if outside_bin:
        lse = torch.logaddexp(lse, torch.full_like(lse, 1.0 / temperature))
    losses = []
    if visible.any():
        # log of the bilinear mix of probabilities, in log space so tiny probabilities do not underflow
        log_p = torch.logsumexp(sim_gt[visible] / temperature + weights_gt[visible].log(), dim=1) - lse[visible]
        losses.append(-log_p)
    if outside_bin and (~visible).any():
        losses.append(lse[~visible] - 1.0 / temperature)
    if not losses:
        return sim.new_zeros(())
    return torch.cat(losses).mean()


def reliability_loss(
    sim_gt: torch.Tensor,
    weights_gt: torch.Tensor,
    scores: torch.Tensor,
    gt_scores: torch.Tensor,
    temperature: float,
    sim: torch.Tensor | None = None,
) -> torch.Tensor:
    """Score-weighted unreliability: sum((1 - r) s) / sum(s), with s = score of the keypoint x score of the other
    map at its ground truth and r its reliability (detached), bilinear from the 4 corner similarities `sim_gt`:
    exp((sim at gt - 1) / t_rel), or, given the keypoints' similarity maps `sim` (N x H*W), the matching
    probability there (softmax of sim / t_rel over the other image). Minimising it moves score mass to keypoints
    whose descriptors match. Inputs are for keypoints visible in the other image."""
    if len(scores) == 0:
        return scores.new_zeros(())
    sim_gt = sim_gt.detach()
    if sim is None:
        r = (((sim_gt - 1.0) / temperature).exp() * weights_gt).sum(1)
    else:
        log_p = torch.logsumexp(sim_gt / temperature + weights_gt.log(), dim=1)
        r = (log_p - torch.logsumexp(sim.detach() / temperature, dim=1)).exp()
    s = scores * gt_scores
    return ((1.0 - r) * s).sum() / s.sum().clamp_min(1e-6)


def outside_random_pool(shape: tuple[int, int], pool: int, device: torch.device | None = None) -> torch.Tensor:
    """Rows x candidates mask of the candidates left out of each row's random pool of about `pool` (MD-Net's fix
    against descriptor collapse, TRAINING.md: the hardest of a few random negatives, not of all of them)."""
    return torch.rand(shape, device=device) >= pool / shape[1]


def triplet_loss(
    desc0: torch.Tensor,
    desc1: torch.Tensor,
    kp1: torch.Tensor,
    gt1: torch.Tensor,
    margin: float,
    radius: float,
    pool: int = 0,
) -> torch.Tensor:
    """Hardest-negative triplet loss: desc0[i] belongs with the descriptor of keypoint 1 closest to its
    ground truth gt1[i] (within `radius`); negatives are keypoints of image 1 farther than `radius` from gt1[i]
    (with `pool` > 0, only those of a random pool of about that many, `outside_random_pool`)."""
    if len(desc0) == 0 or len(desc1) == 0:
        return desc0.new_zeros(())
    pix = torch.cdist(gt1, kp1.detach())
    nearest = pix.argmin(1)
    has_pos = pix.gather(1, nearest[:, None])[:, 0] < radius
    if not has_pos.any():
        return desc0.new_zeros(())
    d = torch.cdist(desc0, desc1)
    pos = d.gather(1, nearest[:, None])[:, 0]
    excluded = pix < radius
    if pool > 0:
        excluded |= outside_random_pool(pix.shape, pool, pix.device)
    neg = d.masked_fill(excluded, float("inf")).min(1).values
    return F.relu(margin + pos - neg)[has_pos & torch.isfinite(neg)].mean().nan_to_num(0.0)


def calibration_loss(
    desc_a: torch.Tensor,
    desc_b: torch.Tensor,
    kp_b: torch.Tensor,
    gt_a: torch.Tensor,
    scores_a: torch.Tensor,
    radius: float,
) -> torch.Tensor:
    """Binary cross-entropy between each keypoint's score and whether it is matched correctly: its descriptor's
    mutual nearest neighbour among image b's keypoints lies within `radius` px of its ground truth `gt_a`.

    The paper's losses are all normalised per image (softmax windows, the reliability's sum(s)), so nothing in
    them fixes the absolute score level and a threshold such as 0.2 means nothing; this makes the score the
    probability of a correct match. Inputs are for keypoints visible in image b."""
    if len(desc_a) == 0 or len(desc_b) == 0:
        return scores_a.new_zeros(())
    correct = matched_correctly(desc_a, desc_b, kp_b, gt_a, radius)
    return F.binary_cross_entropy(scores_a.clamp(1e-6, 1 - 1e-6), correct)


def matched_correctly(
    desc_a: torch.Tensor, desc_b: torch.Tensor, kp_b: torch.Tensor, gt_a: torch.Tensor, radius: float
) -> torch.Tensor:
    """1.0 for each keypoint of image a whose unit descriptor's mutual nearest neighbour among image b's lies within
    `radius` px of its ground truth `gt_a`, else 0.0 (the calibration loss's target)."""
    i, j = mutual_matches(-(desc_a.detach() @ desc_b.detach().T))
    correct = torch.zeros(len(desc_a), device=desc_a.device)
    correct[i[(gt_a[i] - kp_b.detach()[j]).norm(dim=1) < radius]] = 1.0
    return correct


def pair_losses(
    out0: SoftKeypoints,
    out1: SoftKeypoints,
    maps: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    pair: PairGeometry | torch.Tensor,
    cfg: LossConfig,
) -> dict[str, torch.Tensor]:
    """Every loss of one pair. `maps` = (scores0 H x W, scores1, descriptors0 D x H x W, descriptors1); `pair` a
    PairGeometry or a 3 x 3 homography 0 -> 1."""
    s0, s1, d0, d1 = maps
    height, width = s0.shape
    pair = as_geometry(pair)
    rp, n_match = reprojection_loss(
        out0.keypoints,
        out1.keypoints,
        pair,
        height,
        width,
        cfg.match_threshold,
        out0.scores.detach() > cfg.score_threshold,
        out1.scores.detach() > cfg.score_threshold,
        cfg.reprojection_norm,
    )
    pk = (
        peaky_loss(out0.dispersity, out0.scores, cfg.score_threshold)
        + peaky_loss(out1.dispersity, out1.scores, cfg.score_threshold)
    ) / 2
    ds, sp, tr, cal = [], [], [], []
    for view, (a, b, sb, db) in enumerate(((out0, out1, s1, d1), (out1, out0, s0, d0))):
        gt, known = pair.to_other(a.keypoints.detach(), view)
        # keypoints without a known ground truth (real pairs: no depth, or occluded) take no part
        gt, desc, scores = gt[known], a.descriptors[known], a.scores[known]
        vis = inside(gt, (height, width), margin=0.5)
        sim = similarity_map(desc, db)
        sim_gt, w_gt = similarity_at(desc, db, clamp_to_view(gt, height, width))
        ds.append(nre_loss(sim, sim_gt, w_gt, vis, cfg.t_des, cfg.outside_bin))
        gt_scores = interpolate(pixels_of(sb[None]), gt[vis], height, width)[:, 0]
        maps_for_r = sim[vis] if cfg.reliability == "probability" else None
        sp.append(reliability_loss(sim_gt[vis], w_gt[vis], scores[vis], gt_scores, cfg.t_rel, maps_for_r))
        if cfg.w_cal > 0:
            cal.append(
                calibration_loss(desc[vis], b.descriptors, b.keypoints, gt[vis], scores[vis], cfg.calibration_px)
            )
        if cfg.w_tr > 0:
            tr.append(
                triplet_loss(desc[vis], b.descriptors, b.keypoints, gt[vis], cfg.triplet_margin, cfg.triplet_radius)
            )
    losses = {"rp": rp, "pk": pk, "ds": sum(ds) / 2, "sp": sum(sp) / 2}
    total = cfg.w_rp * rp + cfg.w_pk * pk + cfg.w_ds * losses["ds"] + cfg.w_sp * losses["sp"]
    for name, terms, weight in (("tr", tr, cfg.w_tr), ("cal", cal, cfg.w_cal)):
        if terms:
            losses[name] = sum(terms) / 2
            total = total + weight * losses[name]
    losses["total"] = total
    losses["matches"] = torch.tensor(float(n_match))
    return losses
