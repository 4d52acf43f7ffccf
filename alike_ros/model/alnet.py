"""ALNet, the ALIKE backbone and head, with the upstream layer names so upstream checkpoints load as they are.

Upstream quirks kept on purpose (see UPSTREAM_SPEC.md): a 2-4-4 pooling schedule (so the coarse branches
are upsampled by 2, 8 and 32), bias only on the ResBlock shortcuts, `conv4` declared with `dim` inputs,
and the score logit as the *last* channel of `convhead2`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    c1: int
    c2: int
    c3: int
    c4: int
    dim: int
    single_head: bool


MODEL_CONFIGS: dict[str, ModelConfig] = {
    "alike-t": ModelConfig(8, 16, 32, 64, 64, True),
    "alike-s": ModelConfig(8, 16, 48, 96, 96, True),
    "alike-n": ModelConfig(16, 32, 64, 128, 128, True),
    "alike-l": ModelConfig(32, 64, 128, 128, 128, False),
}

# every model of the package that runs on an ALNet: the ALIKE variants, and MD-Net's losses trained on alike-t's
# network (training.mdnet), so the two sets of losses compare on one architecture
MDNET_MODEL = "mdnet"
ALNET_MODELS: dict[str, ModelConfig] = {**MODEL_CONFIGS, MDNET_MODEL: MODEL_CONFIGS["alike-t"]}

Pool = Callable[[torch.Tensor, int], torch.Tensor]

UPSAMPLE_FACTORS = (2, 8, 32)  # branch strides of x2, x3, x4 relative to the input


def model_config(name: str) -> ModelConfig:
    try:
        return ALNET_MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(ALNET_MODELS)}") from None


def conv3x3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1, bias=False)


def conv1x1(cin: int, cout: int, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, bias=bias)


class ConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1, self.bn1 = conv3x3(cin, cout), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = conv3x3(cout, cout), nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(self.bn2(self.conv2(x)), inplace=True)


class ResBlock(nn.Module):
    """torchvision BasicBlock with a biased 1x1 shortcut conv (no BN on the shortcut)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1, self.bn1 = conv3x3(cin, cout), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = conv3x3(cout, cout), nn.BatchNorm2d(cout)
        self.downsample = conv1x1(cin, cout, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.downsample(x), inplace=True)


def upsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=True)


class ALNet(nn.Module):
    """Returns the raw head output: `dim` descriptor channels followed by one score logit channel."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        c1, c2, c3, c4, dim = cfg.c1, cfg.c2, cfg.c3, cfg.c4, cfg.dim
        self.block1 = ConvBlock(3, c1)
        self.block2 = ResBlock(c1, c2)
        self.block3 = ResBlock(c2, c3)
        self.block4 = ResBlock(c3, c4)
        self.conv1 = conv1x1(c1, dim // 4)
        self.conv2 = conv1x1(c2, dim // 4)
        self.conv3 = conv1x1(c3, dim // 4)
        self.conv4 = conv1x1(dim, dim // 4)  # upstream declares `dim` inputs; c4 == dim in every variant
        if not cfg.single_head:
            self.convhead1 = conv1x1(dim, dim)
        self.convhead2 = conv1x1(dim, dim + 1)

    def blocks(self, image: torch.Tensor, pool: Pool = F.max_pool2d) -> list[torch.Tensor]:
        """The four blocks' outputs at 1/1, 1/2, 1/8 and 1/32 of the input (`pool(x, k)`: a k x k max-pool)."""
        x1 = self.block1(image)
        x2 = self.block2(pool(x1, 2))
        x3 = self.block3(pool(x2, 4))
        return [x1, x2, x3, self.block4(pool(x3, 4))]

    def branch_convs(self) -> tuple[nn.Conv2d, ...]:
        """The 1x1 convolution of each block's output into its aggregation branch (ReLU follows)."""
        return self.conv1, self.conv2, self.conv3, self.conv4

    def branches(self, image: torch.Tensor) -> list[torch.Tensor]:
        """The four aggregation branches (after their 1x1 conv and ReLU) at their own resolutions."""
        blocks = self.blocks(image)
        return [F.relu(conv(x), inplace=True) for conv, x in zip(self.branch_convs(), blocks, strict=True)]

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """Full-resolution aggregated features (dim channels), the input of the head."""
        return self.aggregate(self.branches(image))

    def aggregate(self, branches: list[torch.Tensor]) -> torch.Tensor:
        """Upsample the coarse branches to full resolution and concatenate (then alike-l's extra layer)."""
        b1, *coarse = branches
        feats = torch.cat([b1] + [upsample(b, f) for b, f in zip(coarse, UPSAMPLE_FACTORS, strict=True)], dim=1)
        if not self.cfg.single_head:
            feats = F.relu(self.convhead1(feats), inplace=True)
        return feats

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense maps for an image whose sides are multiples of 32: (score logits B x 1 x H x W,
        raw descriptors B x dim x H x W)."""
        head = self.convhead2(self.features(image))
        return head[:, -1:], head[:, :-1]

    def dense_maps(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sigmoid score map and per-pixel unit descriptor map: what training and the reference path use."""
        logits, desc = self(image)
        return torch.sigmoid(logits), F.normalize(desc, p=2, dim=1)
