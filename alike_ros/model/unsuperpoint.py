"""UnsuperPoint (Christiansen et al. 2019; `shared/papers/unsuperpoint_notes.txt`): one keypoint per 8 x 8 cell.

A SuperPoint-like VGG encoder to 1/8 resolution and three heads there: a score per cell (sigmoid), the
keypoint's position inside its cell (two sigmoids, regressed: no NMS, no pixel-wise classification) and a
descriptor map, interpolated at the regressed positions inside the network, so every cell yields a scored,
sub-pixel keypoint with its unit descriptor. The paper's widths (32-32-64-64-128-128-256-256, 256-D) are cut for
2 CPU cores; its BatchNorm and leaky ReLU are kept.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..sampling import at_cells
from .weights import load_configured

MODEL_NAME = "unsuperpoint"
CELL = 8  # px: three 2x2 poolings


@dataclass(frozen=True)
class UnsuperPointConfig:
    channels: tuple[int, int, int, int] = (16, 32, 64, 128)  # two 3x3 convolutions per stage, pooled between
    head: int = 128  # hidden width of each head
    dim: int = 128  # descriptor length


@dataclass
class CellKeypoints:
    """Every cell's keypoint of a batch: scores B x N, points B x N x 2 (x, y image pixels), unit descriptors
    B x N x D, and the in-cell offsets B x N x 2 in [0, 1] the uniformity loss needs; N = cells, row-major."""

    scores: torch.Tensor
    points: torch.Tensor
    descriptors: torch.Tensor
    offsets: torch.Tensor

    def image(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(scores, points, descriptors, offsets) of image i of the batch."""
        return self.scores[i], self.points[i], self.descriptors[i], self.offsets[i]

    def best(self, i: int, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(points, scores, descriptors) of image i's k best-scoring cells, best first."""
        order = torch.argsort(self.scores[i], descending=True, stable=True)[:k]
        return self.points[i, order], self.scores[i, order], self.descriptors[i, order]


def _conv(cin: int, cout: int, kernel: int = 3) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, padding=kernel // 2), nn.BatchNorm2d(cout), nn.LeakyReLU(inplace=True)]


def _head(cin: int, hidden: int, cout: int) -> nn.Sequential:
    return nn.Sequential(*_conv(cin, hidden), nn.Conv2d(hidden, cout, 1))


class UnsuperPoint(nn.Module):
    def __init__(self, cfg: UnsuperPointConfig = UnsuperPointConfig()):
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        cin = 3
        for i, c in enumerate(cfg.channels):
            if i:
                layers.append(nn.MaxPool2d(2))
            layers += _conv(cin, c) + _conv(c, c)
            cin = c
        self.encoder = nn.Sequential(*layers)
        self.score = _head(cin, cfg.head, 1)
        self.position = _head(cin, cfg.head, 2)
        self.descriptor = _head(cin, cfg.head, cfg.dim)

    def cells(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """B x 3 x H x W RGB in [0, 1], H and W multiples of 8 -> each cell's score (B x N), in-cell offset and
        image point (B x N x 2, (x, y)), and the descriptor map (B x D x H/8 x W/8) to `describe` points with."""
        x = self.encoder(images)
        _, _, hc, wc = x.shape
        scores = torch.sigmoid(self.score(x)).flatten(1)
        offsets = torch.sigmoid(self.position(x)).flatten(2).transpose(1, 2)
        ys, xs = torch.meshgrid(torch.arange(hc), torch.arange(wc), indexing="ij")
        cells = torch.stack((xs, ys), -1).reshape(-1, 2).to(offsets)
        # offset 0..1 spans the cell's pixels from edge to edge: pixel centres are at integers, edges at -0.5
        points = (cells + offsets) * CELL - 0.5
        return scores, offsets, points, self.descriptor(x)

    def forward(self, images: torch.Tensor) -> CellKeypoints:
        """Every cell's keypoint, described inside the network (training and validation)."""
        scores, offsets, points, dense = self.cells(images)
        descriptors = torch.stack([describe(dense[i], points[i]) for i in range(len(dense))])
        return CellKeypoints(scores, points, descriptors, offsets)


def fold_batchnorm(net: UnsuperPoint) -> UnsuperPoint:
    """A copy of `net` (eval mode only) with each convolution and the BatchNorm after it fused into one."""
    fused = copy.deepcopy(net).eval()
    for layers in (fused.encoder, fused.score, fused.position, fused.descriptor):
        for i in range(len(layers) - 1):
            if isinstance(layers[i], nn.Conv2d) and isinstance(layers[i + 1], nn.BatchNorm2d):
                layers[i], layers[i + 1] = fuse_conv_bn_eval(layers[i], layers[i + 1]), nn.Identity()
    return fused


def describe(dense: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Unit descriptors (N x D) at N image points from one image's D x H/8 x W/8 descriptor map."""
    return F.normalize(at_cells(dense, points, CELL), dim=-1)


def load_unsuperpoint(path: str | Path) -> UnsuperPoint:
    """The network of an exported weights file or a training checkpoint (its config under "unsuperpoint")."""
    return load_configured(path, MODEL_NAME, MODEL_NAME, UnsuperPointConfig, UnsuperPoint)
