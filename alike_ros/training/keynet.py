"""Training Key.Net (model.keynet) on homography pairs of our photos with the M-SIP loss (training.msip)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..detection.dkd import DetectorConfig, detect
from ..extractors.keynet import load_keynet
from ..extractors.sift_residual import sift_features, to_gray_uint8
from ..geometry import inside, warp_points
from ..model.keynet import MODEL_NAME, KeyNet, KeyNetConfig
from ..model.weights import saved_config
from .msip import msip_loss
from .tasks import register
from .train_config import TrainConfig


def grey_of(images: torch.Tensor) -> torch.Tensor:
    """B x 3 x H x W float RGB -> B x 1 x H x W grey as the extractor makes it (uint8 via OpenCV, then / 255)."""
    grey = [to_gray_uint8(im.permute(1, 2, 0).numpy()).astype(np.float32) / 255.0 for im in images]
    return torch.from_numpy(np.stack(grey))[:, None]


def repeated(k0: torch.Tensor, k1: torch.Tensor, h01: torch.Tensor, size: int, px: float) -> tuple[float, int]:
    """Repeatability of two keypoint sets (share, both directions, of the keypoints the other view sees that
    have a keypoint of the other view within px) and the count of those keypoints of view 0."""
    w01, w10 = warp_points(h01, k0), warp_points(torch.linalg.inv(h01), k1)
    vis0, vis1 = inside(w01, (size, size)), inside(w10, (size, size))
    if not vis0.any() or not vis1.any() or len(k0) == 0 or len(k1) == 0:
        return 0.0, 0
    hit0 = torch.cdist(w01[vis0], k1).min(1).values <= px
    hit1 = torch.cdist(w10[vis1], k0).min(1).values <= px
    return float((hit0.sum() + hit1.sum()) / (vis0.sum() + vis1.sum())), int(hit0.sum())


class KeyNetTask:
    def build(self, cfg: TrainConfig) -> KeyNet:
        return KeyNet(cfg.keynet)

    def losses(self, net: KeyNet, batch: dict[str, torch.Tensor], cfg: TrainConfig) -> dict[str, torch.Tensor]:
        n = len(batch["H"])
        logits = net(grey_of(torch.cat((batch["image0"], batch["image1"]))))
        totals = [
            msip_loss(logits[[i, i + n]], batch["H"][i], (batch["mask0"][i], batch["mask1"][i]), cfg.msip)
            for i in range(n)
        ]
        total = torch.stack(totals).mean()
        return {"total": total}

    @torch.no_grad()
    def validate(self, net: KeyNet, pairs: list[dict[str, torch.Tensor]], cfg: TrainConfig) -> dict[str, float]:
        """Repeatability at 3 px of the top `val_top_k` keypoints (NMS 15, Key.Net's evaluation window) and of
        OpenCV SIFT's strongest `val_top_k` on the same pairs; "correct_matches" is our repeated count."""
        was_training = net.training
        net.eval()
        det = DetectorConfig.strongest(cfg.val_top_k, window_size=15)
        rows = []
        for pair in pairs:
            images = torch.stack((pair["image0"], pair["image1"]))
            size = images.shape[-1]
            logits = net(grey_of(images))
            ours = [detect(torch.sigmoid(logits[v, 0]), det)[0].float() for v in (0, 1)]
            sift = [
                torch.from_numpy(sift_features(to_gray_uint8(im.permute(1, 2, 0).numpy()), cfg.val_top_k)[0])
                for im in images
            ]
            rep, count = repeated(*ours, pair["H"], size, cfg.val_match_px)
            sift_rep, _ = repeated(*sift, pair["H"], size, cfg.val_match_px)
            loss = msip_loss(logits, pair["H"], (pair["mask0"], pair["mask1"]), cfg.msip)
            rows.append(
                {
                    "repeatability": rep,
                    "correct_matches": float(count),
                    "sift_repeatability": sift_rep,
                    "val_loss": loss.item(),
                }
            )
        net.train(was_training)
        return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}

    def load(self, path: str | Path, cfg: TrainConfig) -> KeyNet:
        return load_keynet(path)

    def export_fields(self, checkpoint: dict) -> dict:
        return saved_config(checkpoint, "keynet", KeyNetConfig)


register(KeyNetTask, MODEL_NAME)
