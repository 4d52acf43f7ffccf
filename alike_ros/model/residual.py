"""Residual descriptors on SIFT (Shrestha et al., "Residual Learning for Image Point Descriptors").

SIFT gives the keypoints and a 128-D descriptor (the handcrafted g); a small VGG-style CNN gives a dense
descriptor map at 1/8 resolution, sampled at the SIFT keypoints (the network h); a 3-layer MLP, the paper's
"refine layer", projects the SIFT descriptor (the fusion f). The final descriptor is the two concatenated and
L2-normalised, so the CNN only has to learn what SIFT's descriptor lacks. `refine_dim = 0` is the paper's
ablation: the CNN branch alone at SIFT keypoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..sampling import at_cells
from .weights import load_configured

MODEL_NAME = "sift-residual"
SIFT_DIM = 128


@dataclass(frozen=True)
class ResidualConfig:
    # The paper trims SuperPoint's encoder (64-64-128-128 channels, 256-D head, 128-D output); on 2 CPU cores we
    # keep its shape (two 3x3 convolutions per block, three 2x2 max-pools to 1/8) at 1/8 to 1/2 of the widths:
    # 16-32-64-64 measured 105 ms per 640x480 frame, these 32 ms (alike-t's network: 50 ms, same run, busy CPU)
    channels: tuple[int, int, int, int] = (8, 16, 32, 64)
    head: int = 128  # hidden width of the descriptor head
    cnn_dim: int = 64  # CNN descriptor length (the paper: 128)
    refine_hidden: int = 256  # the paper's refine layer: 128 -> 256 -> 256 -> refine_dim
    refine_dim: int = 64  # 0: no SIFT part (the ablation); the paper: 128

    @property
    def dim(self) -> int:
        return self.cnn_dim + self.refine_dim


def _block(cin: int, cout: int) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.ReLU(inplace=True),
    ]


class ResidualDescriptorNet(nn.Module):
    def __init__(self, cfg: ResidualConfig = ResidualConfig()):
        super().__init__()
        self.cfg = cfg
        c1, c2, c3, c4 = cfg.channels
        pool = nn.MaxPool2d(2)
        self.encoder = nn.Sequential(
            *_block(3, c1), pool, *_block(c1, c2), pool, *_block(c2, c3), pool, *_block(c3, c4)
        )
        self.head = nn.Sequential(
            nn.Conv2d(c4, cfg.head, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(cfg.head, cfg.cnn_dim, 1)
        )
        self.refine = (
            nn.Sequential(
                nn.Linear(SIFT_DIM, cfg.refine_hidden),
                nn.ReLU(inplace=True),
                nn.Linear(cfg.refine_hidden, cfg.refine_hidden),
                nn.ReLU(inplace=True),
                nn.Linear(cfg.refine_hidden, cfg.refine_dim),
            )
            if cfg.refine_dim
            else None
        )

    def dense(self, images: torch.Tensor) -> torch.Tensor:
        """B x 3 x H x W RGB in [0, 1] (H, W multiples of 8) -> B x cnn_dim x H/8 x W/8."""
        return self.head(self.encoder(images))

    def describe(self, dense: torch.Tensor, keypoints: torch.Tensor, sift: torch.Tensor | None) -> torch.Tensor:
        """Unit descriptors (N x dim) of N keypoints (x, y pixels of the B = 1 input) from one image's
        cnn_dim x H/8 x W/8 map and their L2-normalised SIFT descriptors (N x 128)."""
        cnn = at_cells(dense, keypoints, 8)
        parts = [cnn]
        if self.refine is not None:
            if sift is None:
                raise ValueError("this model fuses SIFT descriptors: pass them")
            parts.append(self.refine(sift.to(cnn.dtype)))
        return F.normalize(torch.cat(parts, 1), dim=1)


def load_residual(path: str | Path) -> ResidualDescriptorNet:
    """The network of an exported weights file or a training checkpoint (its config under "residual")."""
    return load_configured(path, MODEL_NAME, "residual", ResidualConfig, ResidualDescriptorNet)
