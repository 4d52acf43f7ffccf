"""Training `unsuperpoint` (model.unsuperpoint) with UnsuperPoint's losses (training.unsuperpoint_losses) on
homography pairs of our photos: no keypoint labels, only the known warp."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..model.unsuperpoint import MODEL_NAME, UnsuperPoint, UnsuperPointConfig, load_unsuperpoint
from ..model.weights import saved_config
from .metrics import pair_metrics
from .tasks import register
from .train_config import TrainConfig
from .unsuperpoint_losses import pair_losses


def batch_losses(net: UnsuperPoint, batch: dict[str, torch.Tensor], cfg: TrainConfig) -> dict[str, torch.Tensor]:
    n = len(batch["H"])
    cells = net(torch.cat((batch["image0"], batch["image1"])))
    size = batch["image0"].shape[-1]
    per_pair = [
        pair_losses(cells.image(i), cells.image(i + n), batch["H"][i], size, cfg.unsuperpoint_loss) for i in range(n)
    ]
    return {k: torch.stack([p[k] for p in per_pair]).mean() for k in per_pair[0]}


class UnsuperPointTask:
    def build(self, cfg: TrainConfig) -> UnsuperPoint:
        return UnsuperPoint(cfg.unsuperpoint)

    losses = staticmethod(batch_losses)

    @torch.no_grad()
    def validate(self, net: UnsuperPoint, pairs: list[dict[str, torch.Tensor]], cfg: TrainConfig) -> dict[str, float]:
        """Repeatability and mutual-NN matching of the `val_top_k` best cells of each view, the score map's
        level and spread (does it collapse?), and the losses (BatchNorm in eval mode)."""
        was_training = net.training
        net.eval()
        rows = []
        for pair in pairs:
            batch = {k: v[None] for k, v in pair.items()}
            cells = net(torch.cat((batch["image0"], batch["image1"])))
            (k0, _, f0), (k1, _, f1) = cells.best(0, cfg.val_top_k), cells.best(1, cfg.val_top_k)
            size = pair["image0"].shape[-1]
            rows.append(
                {
                    **pair_metrics(k0, f0, k1, f1, pair["H"], size, cfg.val_match_px),
                    "score_mean": cells.scores.mean().item(),
                    "score_std": cells.scores.std().item(),
                    "val_loss": batch_losses(net, batch, cfg)["total"].item(),
                }
            )
        net.train(was_training)
        return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}

    def load(self, path: str | Path, cfg: TrainConfig) -> UnsuperPoint:
        return load_unsuperpoint(path)

    def export_fields(self, checkpoint: dict) -> dict:
        return saved_config(checkpoint, "unsuperpoint", UnsuperPointConfig)


register(UnsuperPointTask, MODEL_NAME)
