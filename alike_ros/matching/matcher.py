"""Mutual nearest-neighbour matching of unit descriptors on cosine similarity, on the descriptors' device."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..config import check, setting


@dataclass
class Matches:
    indices: np.ndarray  # M x 2 int64: (index in the first set, index in the second set)
    similarity: np.ndarray  # M float32 cosine similarity

    def __len__(self) -> int:
        return len(self.indices)


@dataclass
class MatcherConfig:
    min_similarity: float = setting(
        0.8, "minimum cosine similarity of a match; pairs below are never reported", range=(-1.0, 1.0)
    )
    mutual: bool = setting(True, "keep only mutual nearest neighbours")
    ratio: float = setting(1.0, "Lowe's ratio test on descriptor distances; 1.0: off", range=(0.01, 1.0))

    def validate(self) -> None:
        check(self)


class Matcher:
    def __init__(self, config: MatcherConfig | None = None, device: str | torch.device = "cpu"):
        self.config = config or MatcherConfig()
        self.config.validate()
        self.device = torch.device(device)

    @torch.inference_mode()
    def __call__(self, desc0: np.ndarray | torch.Tensor, desc1: np.ndarray | torch.Tensor) -> Matches:
        d0 = torch.as_tensor(desc0, device=self.device, dtype=torch.float32)
        d1 = torch.as_tensor(desc1, device=self.device, dtype=torch.float32)
        if len(d0) == 0 or len(d1) == 0:
            return Matches(np.zeros((0, 2), np.int64), np.zeros(0, np.float32))
        if d0.shape[1] != d1.shape[1]:
            raise ValueError(f"descriptor sizes differ: {d0.shape[1]} and {d1.shape[1]}")
        cfg = self.config
        sim = d0 @ d1.T
        best, nn01 = sim.max(dim=1)
        keep = best >= cfg.min_similarity  # explicit test: no leaked pairs below the threshold
        if cfg.mutual:
            nn10 = sim.argmax(dim=0)
            keep &= nn10[nn01] == torch.arange(len(d0), device=self.device)
        if cfg.ratio < 1.0 and sim.shape[1] > 1:
            top2 = sim.topk(2, dim=1).values
            dist = torch.sqrt((2 - 2 * top2).clamp(min=0))  # unit vectors: |a - b|^2 = 2 - 2 cos
            keep &= dist[:, 0] < cfg.ratio * dist[:, 1]
        idx0 = torch.nonzero(keep).squeeze(1)
        indices = torch.stack((idx0, nn01[idx0]), dim=1)
        return Matches(indices.cpu().numpy(), best[idx0].cpu().numpy().astype(np.float32))
