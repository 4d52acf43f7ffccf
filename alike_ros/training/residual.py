"""Training `sift-residual` (model.residual): the paper's hinge loss on homography pairs of our photos.

SIFT runs on both views of a pair (OpenCV, not differentiable: its keypoints and descriptors are inputs);
the CNN describes both views densely and the refine MLP projects SIFT's descriptors. For every keypoint of one
view that the other view sees, the positive is the other view's SIFT keypoint nearest its true position (within
`loss.triplet_radius` px) and the negative the hardest (most similar) keypoint farther away:
max(0, d(a, p) - d(a, n) + m) on unit descriptors, with the paper's m = 2 (`loss.triplet_margin`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..extractors.sift_residual import sift_features, to_gray_uint8
from ..geometry import inside, warp_points
from ..model.residual import MODEL_NAME, ResidualConfig, ResidualDescriptorNet, load_residual
from ..model.weights import saved_config
from .losses import mutual_matches, triplet_loss
from .tasks import register
from .train_config import TrainConfig


def view_sift(image: torch.Tensor, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    """SIFT keypoints (N x 2) and unit descriptors (N x 128) of a 3 x H x W float view, as the extractor finds them."""
    points, _, descriptors = sift_features(to_gray_uint8(image.permute(1, 2, 0).numpy()), limit)
    return torch.from_numpy(points), torch.from_numpy(descriptors)


def _described_pair(net: ResidualDescriptorNet, dense: torch.Tensor, images: torch.Tensor, limit: int):
    """(keypoints, our descriptors, SIFT's descriptors) of both views of one pair; dense is 2 x C x H/8 x W/8."""
    out = []
    for view in (0, 1):
        kp, sift = view_sift(images[view], limit)
        out.append((kp, net.describe(dense[view], kp, sift), sift))
    return out


def pair_losses(
    kp0: torch.Tensor,
    d0: torch.Tensor,
    kp1: torch.Tensor,
    d1: torch.Tensor,
    h01: torch.Tensor,
    size: int,
    cfg: TrainConfig,
) -> torch.Tensor:
    """The symmetric triplet loss of one pair."""
    losses = []
    for ka, da, kb, db, h in ((kp0, d0, kp1, d1, h01), (kp1, d1, kp0, d0, torch.linalg.inv(h01))):
        gt = warp_points(h, ka)
        visible = inside(gt, (size, size), margin=0.5)
        losses.append(triplet_loss(da[visible], db, kb, gt[visible], cfg.loss.triplet_margin, cfg.loss.triplet_radius))
    return sum(losses) / 2


class ResidualTask:
    def build(self, cfg: TrainConfig) -> ResidualDescriptorNet:
        return ResidualDescriptorNet(cfg.residual)

    def losses(self, net: ResidualDescriptorNet, batch: dict[str, torch.Tensor], cfg: TrainConfig):
        n = len(batch["H"])
        images = torch.cat((batch["image0"], batch["image1"]))
        dense = net.dense(images)
        totals = []
        for i in range(n):
            (kp0, d0, _), (kp1, d1, _) = _described_pair(net, dense[[i, i + n]], images[[i, i + n]], cfg.top_k)
            totals.append(pair_losses(kp0, d0, kp1, d1, batch["H"][i], images.shape[-1], cfg))
        total = torch.stack(totals).mean()
        return {"total": total, "tr": total.detach()}

    @torch.no_grad()
    def validate(self, net: ResidualDescriptorNet, pairs: list[dict[str, torch.Tensor]], cfg: TrainConfig):
        """Mutual-NN matching of our descriptors and of plain SIFT's at the same keypoints, 3 px."""
        was_training = net.training
        net.eval()
        rows = []
        for pair in pairs:
            images = torch.stack((pair["image0"], pair["image1"]))
            size = images.shape[-1]
            (kp0, d0, s0), (kp1, d1, s1) = _described_pair(net, net.dense(images), images, cfg.val_top_k)
            row = {"val_loss": pair_losses(kp0, d0, kp1, d1, pair["H"], size, cfg).item()}
            w01 = warp_points(pair["H"], kp0)
            for name, (a, b) in {"": (d0, d1), "sift_": (s0, s1)}.items():
                i, j = mutual_matches(-(a @ b.T))
                correct = (w01[i] - kp1[j]).norm(dim=1) < cfg.val_match_px
                row[f"{name}correct_matches"] = float(correct.sum())
                row[f"{name}match_precision"] = correct.float().mean().item() if len(i) else 0.0
            rows.append(row)
        net.train(was_training)
        return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}

    def load(self, path: str | Path, cfg: TrainConfig) -> ResidualDescriptorNet:
        return load_residual(path)

    def export_fields(self, checkpoint: dict) -> dict:
        return saved_config(checkpoint, "residual", ResidualConfig)


register(ResidualTask, MODEL_NAME)
