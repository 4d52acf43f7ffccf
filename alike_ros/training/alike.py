"""Training ALIKE (ALNet with the ALIKE losses): the task of every ALNet model without a task of its own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..detection.dkd import DetectorConfig, describe_dense, detect
from ..model.alnet import ALNet, model_config
from ..model.weights import load_model
from .data import collate
from .detection import soft_detect
from .losses import pair_losses
from .metrics import pair_metrics
from .pair_geometry import geometry_of
from .tasks import register
from .train_config import TrainConfig


def batch_losses(net: ALNet, batch: dict[str, torch.Tensor], cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """Mean of every loss over the pairs of a batch (both views of all pairs in one forward pass); homography
    pairs and real pairs alike (`pair_geometry.geometry_of`)."""
    n = len(batch["image0"])
    images = torch.cat((batch["image0"], batch["image1"]))
    if cfg.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    scores, descs = net.dense_maps(images)
    per_pair = []
    for i in range(n):
        outs = [
            soft_detect(scores[j, 0], descs[j], cfg.top_k, cfg.window_size, cfg.temperature, cfg.border)
            for j in (i, i + n)
        ]
        maps = (scores[i, 0], scores[i + n, 0], descs[i], descs[i + n])
        per_pair.append(pair_losses(outs[0], outs[1], maps, geometry_of(batch, i), cfg.loss))
    return {k: torch.stack([p[k] for p in per_pair]).mean() for k in per_pair[0]}


@torch.no_grad()
def validate(net: ALNet, pairs: list[dict[str, torch.Tensor]], cfg: TrainConfig) -> dict[str, float]:
    """Inference-path metrics on held-out pairs: repeatability, mutual-NN matching precision and count, and
    how many keypoints pass the default 0.2 threshold; plus the training losses (BatchNorm in eval mode)."""
    was_training = net.training
    net.eval()
    det = DetectorConfig.strongest(cfg.val_top_k)
    rows = []
    for pair in pairs:
        batch = collate([pair])
        scores, descs = net.dense_maps(torch.cat((batch["image0"], batch["image1"])))
        h01 = pair["H"]
        (k0, _), (k1, _) = detect(scores[0, 0], det), detect(scores[1, 0], det)
        f0, f1 = describe_dense(descs[0], k0), describe_dense(descs[1], k1)
        outs = [
            soft_detect(scores[j, 0], descs[j], cfg.top_k, cfg.window_size, cfg.temperature, cfg.border) for j in (0, 1)
        ]
        losses = pair_losses(outs[0], outs[1], (scores[0, 0], scores[1, 0], descs[0], descs[1]), h01, cfg.loss)
        rows.append(
            {
                **pair_metrics(k0, f0, k1, f1, h01, scores.shape[-1], cfg.val_match_px),
                "kp_above_0.2": _count_above(scores, 0.2),
                "val_loss": losses["total"].item(),
            }
        )
    net.train(was_training)
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def _count_above(scores: torch.Tensor, threshold: float) -> float:
    """Mean number of inference-mode keypoints (default NMS, threshold) per image of a 2 x 1 x H x W batch."""
    det = DetectorConfig(score_threshold=threshold, selection="top")
    return float(np.mean([len(detect(s[0], det)[0]) for s in scores]))


class AlikeTask:
    """ALNet with the ALIKE losses (the functions above)."""

    def build(self, cfg: TrainConfig) -> ALNet:
        return ALNet(model_config(cfg.model))

    losses = staticmethod(batch_losses)
    validate = staticmethod(validate)

    def load(self, path: str | Path, cfg: TrainConfig) -> ALNet:
        return load_model(cfg.model, path)

    def export_fields(self, checkpoint: dict) -> dict:
        return {}


register(AlikeTask, default=True)
