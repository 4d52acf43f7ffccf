"""Exact fast inference for ALNet: dense score map, descriptors only where they are needed.

Two identities make this exact (up to float rounding):
- `convhead2` is linear and bias-free and bilinear upsampling is linear per channel, so for the
  single-head variants the score logit is the sum over branches of (score row . branch), each computed
  at the branch's own resolution and upsampled as one channel.
- Descriptors are only sampled at keypoints, so the head runs at each keypoint's four integer neighbours,
  where the coarse branches are bilinearly interpolated exactly as the dense upsampling would.
Eval-mode BatchNorm is folded into the convolutions first.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..sampling import interpolate, pixels_of
from .alnet import UPSAMPLE_FACTORS, ALNet, upsample


def fold_batchnorm(net: ALNet) -> ALNet:
    """A copy of `net` with every conv+BN pair fused into one biased conv (eval mode only)."""
    fused = copy.deepcopy(net).eval()
    for block in (fused.block1, fused.block2, fused.block3, fused.block4):
        block.conv1 = fuse_conv_bn_eval(block.conv1, block.bn1)
        block.conv2 = fuse_conv_bn_eval(block.conv2, block.bn2)
        block.bn1, block.bn2 = nn.Identity(), nn.Identity()
    return fused


@dataclass
class Branches:
    """The four aggregation branches of one image (1 x C x h x w each) and the padded input size."""

    maps: list[torch.Tensor]
    height: int
    width: int


class SparseHeadALNet(nn.Module):
    def __init__(self, net: ALNet):
        super().__init__()
        self.net = fold_batchnorm(net)
        self.single_head = net.cfg.single_head
        head = self.net.convhead2.weight.detach()[:, :, 0, 0]  # (dim + 1) x dim
        self.register_buffer("desc_weight", head[:-1].clone())
        # the score row split per branch, as 1x1 conv weights, for the single-head shortcut
        self.register_buffer("score_weight", head[-1:, :, None, None].clone())

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, Branches]:
        """Score logits (1 x 1 x H x W) and the branches that `descriptors_at` needs."""
        maps = self.net.branches(image)
        return self.score_logits(maps), Branches(maps, image.shape[2], image.shape[3])

    def score_logits(self, maps: list[torch.Tensor]) -> torch.Tensor:
        """Score logits (1 x 1 x H x W) of the four branches."""
        if self.single_head:
            parts = self.score_weight.chunk(4, dim=1)  # the score row split per branch
            logits = F.conv2d(maps[0], parts[0])
            for part, branch, factor in zip(parts[1:], maps[1:], UPSAMPLE_FACTORS, strict=True):
                logits = logits + upsample(F.conv2d(branch, part), factor)
        else:
            logits = F.conv2d(self.net.aggregate(maps), self.score_weight)
        return logits

    def features_at(self, branches: Branches, pixels: torch.Tensor) -> torch.Tensor:
        """Aggregated head input (M x dim) at integer pixels (M x 2, (x, y)) of the padded image."""
        x, y = pixels[:, 0].float(), pixels[:, 1].float()
        fine, *coarse = branches.maps
        parts = [fine[0, :, pixels[:, 1], pixels[:, 0]].T]
        for branch in coarse:
            h, w = branch.shape[2:]
            # align_corners=True upsampling reads source coordinate dst * (in - 1) / (out - 1)
            sx = x * ((w - 1) / (branches.width - 1))
            sy = y * ((h - 1) / (branches.height - 1))
            parts.append(interpolate(pixels_of(branch[0]), torch.stack((sx, sy), 1), h, w))
        feats = torch.cat(parts, dim=1)
        if not self.single_head:
            feats = F.relu(F.linear(feats, self.net.convhead1.weight[:, :, 0, 0]))
        return feats

    def descriptors_at(self, branches: Branches, pixels: torch.Tensor) -> torch.Tensor:
        """Unit descriptors (M x dim) at integer pixels: what the dense normalised map holds there."""
        raw = F.linear(self.features_at(branches, pixels).to(self.desc_weight.dtype), self.desc_weight)
        return F.normalize(raw.float(), dim=1)
