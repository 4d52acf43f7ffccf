"""Exact fast inference for ALNet: dense score map, descriptors only where they are needed.

Exact up to float rounding, because:
- `convhead2` is linear and bias-free and bilinear upsampling is linear per channel, so for the
  single-head variants the score logit is the sum over branches of (score row . branch), each computed
  at the branch's own resolution and upsampled as one channel.
- Descriptors are only sampled at keypoints, so the head runs at each keypoint's four integer neighbours,
  where the coarse branches are bilinearly interpolated exactly as the dense upsampling would.
- The full-resolution branch (block1's 1x1 conv and ReLU, dim/4 channels) is never stored: its score part is
  computed a band of rows at a time, which stays in the cache, and the descriptors recompute it at their pixels.
Eval-mode BatchNorm is folded into the convolutions first.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..sampling import pixels_of
from .alnet import UPSAMPLE_FACTORS, ALNet, upsample


def fold_batchnorm(net: ALNet) -> ALNet:
    """A copy of `net` with every conv+BN pair fused into one biased conv (eval mode only)."""
    fused = copy.deepcopy(net).eval()
    for block in (fused.block1, fused.block2, fused.block3, fused.block4):
        block.conv1 = fuse_conv_bn_eval(block.conv1, block.bn1)
        block.conv2 = fuse_conv_bn_eval(block.conv2, block.bn2)
        block.bn1, block.bn2 = nn.Identity(), nn.Identity()
    return fused


# pixels per band of rows in `fine_score` (25 rows at 640 px wide): their dim/4 channels stay in the L2 cache
BAND_PIXELS = 16384


def max_pool(x: torch.Tensor, k: int) -> torch.Tensor:
    """`F.max_pool2d(x, k)`, the 2 x 2 pool of a channels-last CPU map as two maxima of strided views: about half
    the time of torch's pool there (which also computes indices). Maxima are exact, so is the result."""
    if k != 2 or not eager_cpu_channels_last(x) or x.shape[0] != 1 or x.shape[2] % 2 or x.shape[3] % 2:
        return F.max_pool2d(x, k)
    _, c, h, w = x.shape
    rows = x.permute(0, 2, 3, 1).reshape(h // 2, 2, w // 2, 2 * c)  # pixel pairs of a row side by side
    pairs = torch.maximum(rows[:, 0], rows[:, 1]).view(h // 2, w // 2, 2, c)
    return torch.maximum(pairs[:, :, 0], pairs[:, :, 1])[None].permute(0, 3, 1, 2)


def per_pixel(function: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """`function` of each pixel's channels of a 1 x C x H x W map (channels last in, channels last out), as a map:
    a view, not a copy, where the map is stored channels-last."""
    return function(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def eager_cpu_channels_last(x: torch.Tensor) -> bool:
    """Whether `x` is a channels-last map on the CPU, outside tracing: where the shortcuts here pay (an exported
    graph gets the plain operations, which work for every size)."""
    return not torch.jit.is_tracing() and x.device.type == "cpu" and x.permute(0, 2, 3, 1).is_contiguous()


@dataclass
class Branches:
    """What describing needs of one image: block1's output (1 x c1 x H x W, before the fine branch's 1x1 conv),
    the three coarse aggregation branches (1 x dim/4 x h x w each) and the padded input size."""

    fine: torch.Tensor
    coarse: list[torch.Tensor]
    height: int
    width: int

    @property
    def maps(self) -> list[torch.Tensor]:
        """Every map, finest first: what the exported graph outputs after the scores."""
        return [self.fine, *self.coarse]

    def image(self, index: int) -> Branches:
        """The branches of one image of a batch."""
        return Branches(
            self.fine[index : index + 1], [c[index : index + 1] for c in self.coarse], self.height, self.width
        )


class SparseHeadALNet(nn.Module):
    def __init__(self, net: ALNet):
        super().__init__()
        self.net = fold_batchnorm(net)
        self.single_head = net.cfg.single_head
        self.register_buffer("fine_weight", self.net.conv1.weight.detach()[:, :, 0, 0].clone())  # dim/4 x c1
        head = self.net.convhead2.weight.detach()[:, :, 0, 0]  # (dim + 1) x dim
        self.register_buffer("desc_weight", head[:-1].clone())
        # the score row as a 1x1 conv weight (1 x dim x 1 x 1); `score_rows` splits it per branch
        self.register_buffer("score_weight", head[-1:, :, None, None].clone())

    @property
    def score_rows(self) -> tuple[torch.Tensor, ...]:
        """The score row's part for each branch, finest first (1 x dim/4 each)."""
        return self.score_weight[:, :, 0, 0].chunk(4, dim=1)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, Branches]:
        """Score logits (1 x 1 x H x W) and the branches that `descriptors_at` needs."""
        branches = self.branches(image)
        return self.score_logits(branches), branches

    def branches(self, image: torch.Tensor) -> Branches:
        fine, *blocks = self.net.blocks(image, max_pool)
        convs = self.net.branch_convs()[1:]
        coarse = [F.relu(conv(x), inplace=True) for conv, x in zip(convs, blocks, strict=True)]
        return Branches(fine, coarse, image.shape[2], image.shape[3])

    def fine_branch(self, fine: torch.Tensor) -> torch.Tensor:
        """The full-resolution aggregation branch from block1's output, pixels last: (..., c1) -> (..., dim/4)."""
        return F.relu(F.linear(fine, self.fine_weight), inplace=True)

    def fine_score(self, fine: torch.Tensor) -> torch.Tensor:
        """The fine branch's part of the score logits (1 x 1 x H x W), on the CPU a band of rows at a time, so
        the dim/4-channel full-resolution branch is never stored (it would be the network's largest map)."""
        row = self.score_rows[0]

        def score(pixels: torch.Tensor) -> torch.Tensor:
            return F.linear(self.fine_branch(pixels), row)

        if not eager_cpu_channels_last(fine):
            return per_pixel(score, fine)
        rows = max(1, BAND_PIXELS // fine.shape[3])
        return torch.cat([per_pixel(score, fine[:, :, r : r + rows]) for r in range(0, fine.shape[2], rows)], dim=2)

    def score_logits(self, branches: Branches) -> torch.Tensor:
        """Score logits (1 x 1 x H x W) of an image's branches."""
        if not self.single_head:
            fine = per_pixel(self.fine_branch, branches.fine)
            return F.conv2d(self.net.aggregate([fine, *branches.coarse]), self.score_weight)
        logits = self.fine_score(branches.fine)
        for row, branch, factor in zip(self.score_rows[1:], branches.coarse, UPSAMPLE_FACTORS, strict=True):
            # a product over the channels-last pixels: half the time of a one-channel 1x1 convolution here
            logits = logits + upsample(per_pixel(partial(F.linear, weight=row), branch), factor)
        return logits

    def features_at(self, branches: Branches, pixels: torch.Tensor) -> torch.Tensor:
        """Aggregated head input (M x dim) at integer pixels (M x 2, (x, y)) of the padded image."""
        parts = [self.fine_branch(pixels_of(branches.fine[0])(pixels))]
        # align_corners=True upsampling reads source coordinate dst * (in - 1) / (out - 1) of every branch, which
        # is grid_sample's align_corners=True grid dst / (out - 1) * 2 - 1, one grid for all three
        size = pixels.new_tensor([branches.width - 1, branches.height - 1], dtype=torch.float32)
        grid = (pixels.float() / size * 2 - 1)[None, None].to(branches.coarse[0].dtype)
        for branch in branches.coarse:
            parts.append(F.grid_sample(branch, grid, padding_mode="border", align_corners=True)[0, :, 0].T)
        feats = torch.cat(parts, dim=1)
        if not self.single_head:
            feats = F.relu(F.linear(feats, self.net.convhead1.weight[:, :, 0, 0]))
        return feats

    def descriptors_at(self, branches: Branches, pixels: torch.Tensor) -> torch.Tensor:
        """Unit descriptors (M x dim) at integer pixels: what the dense normalised map holds there."""
        raw = F.linear(self.features_at(branches, pixels).to(self.desc_weight.dtype), self.desc_weight)
        return F.normalize(raw.float(), dim=1)
