"""Key.Net (Barroso-Laguna et al. 2019): a shallow keypoint detector of handcrafted and learned filters.

Per pyramid level (the grey image, then blurred and downscaled by 1.2 twice): a frozen layer of the ten
first- and second-order derivative maps of Harris and Hessian detectors (Ix, Iy, Ix*Iy, Ix^2, Iy^2, Ixx, Iyy,
Ixy, Ixx*Iyy, Ixy^2), then three learned blocks of 8 filters 5x5 + BatchNorm + ReLU, shared by the levels. The
levels' maps are upsampled to full size and concatenated, and a last learned 1x1 filter gives the response
map. A few thousand parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

MODEL_NAME = "keynet"


@dataclass(frozen=True)
class KeyNetConfig:
    filters: int = 8  # M, per learned block
    blocks: int = 3
    kernel: int = 5
    levels: int = 3
    factor: float = 1.2  # downscaling between pyramid levels


def _derivative_kernels() -> torch.Tensor:
    """Sobel kernels (scaled to unit gain) for d/dx, d/dy, and a 5x5 set for d2/dx2, d2/dy2, d2/dxdy."""
    smooth, diff = torch.tensor([1.0, 2.0, 1.0]) / 4, torch.tensor([-1.0, 0.0, 1.0]) / 2
    dx, dy = torch.outer(smooth, diff), torch.outer(diff, smooth)
    pad = lambda k: F.pad(k, (1, 1, 1, 1))  # noqa: E731 - 3x3 into the middle of 5x5
    conv = lambda a, b: F.conv2d(pad(a)[None, None], b.flip(0, 1)[None, None], padding=1)[0, 0]  # noqa: E731
    return torch.stack((pad(dx), pad(dy), conv(dx, dx), conv(dy, dy), conv(dx, dy)))[:, None]


class HandcraftedFilters(nn.Module):
    """The frozen first layer: 1 grey channel in, 10 derivative maps out."""

    def __init__(self):
        super().__init__()
        self.register_buffer("kernels", _derivative_kernels(), persistent=False)

    def forward(self, grey: torch.Tensor) -> torch.Tensor:
        ix, iy, ixx, iyy, ixy = F.conv2d(F.pad(grey, (2, 2, 2, 2), mode="replicate"), self.kernels).unbind(1)
        maps = (ix, iy, ix * iy, ix * ix, iy * iy, ixx, iyy, ixy, ixx * iyy, ixy * ixy)
        return torch.stack(maps, 1)


class KeyNet(nn.Module):
    def __init__(self, cfg: KeyNetConfig = KeyNetConfig()):
        super().__init__()
        self.cfg = cfg
        self.handcrafted = HandcraftedFilters()
        layers: list[nn.Module] = []
        channels = 10
        for _ in range(cfg.blocks):
            layers += [
                nn.Conv2d(channels, cfg.filters, cfg.kernel, padding=cfg.kernel // 2, bias=False),
                nn.BatchNorm2d(cfg.filters),
                nn.ReLU(inplace=True),
            ]
            channels = cfg.filters
        self.learned = nn.Sequential(*layers)
        self.last = nn.Conv2d(cfg.filters * cfg.levels, 1, 1)

    def forward(self, grey: torch.Tensor) -> torch.Tensor:
        """B x 1 x H x W grey in [0, 1] -> B x 1 x H x W response map (logits: sigmoid gives the scores)."""
        size = grey.shape[-2:]
        level, features = grey, []
        for index in range(self.cfg.levels):
            if index:  # blur and downscale by the factor (antialiased bilinear resampling does both)
                level = F.interpolate(level, scale_factor=1 / self.cfg.factor, mode="bilinear", antialias=True)
            maps = self.learned(self.handcrafted(level))
            features.append(maps if index == 0 else F.interpolate(maps, size=size, mode="bilinear"))
        return self.last(torch.cat(features, 1))
