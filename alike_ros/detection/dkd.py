"""Differentiable Keypoint Detection (DKD) at inference: NMS, border, selection, soft-argmax refinement.

Everything works on one image's score map (H x W tensor of sigmoid scores) on its own device; only the
selected keypoints leave these functions. Pixel convention: (x, y) = (column, row), integer = pixel centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..config import check, setting
from ..sampling import interpolate, pixels_of


@dataclass
class DetectorConfig:
    window_size: int = setting(
        5, "NMS and sub-pixel refinement window (odd); upstream hard-codes 5", range=(3, 31), step=2
    )
    top_k: int = setting(
        -1,
        "keep the k best keypoints above the threshold; <= 0: every one (capped by max_keypoints)",
        range=(-1, 100_000),
    )
    score_threshold: float = setting(
        0.2,
        "peaks must score above this on the score map (upstream's top-k mode has none: use 0)",
        range=(0.0, 1.0),
        below_max=True,
    )
    max_keypoints: int = setting(
        2000, "cap on the keypoints of one image, best kept, in either mode", range=(1, 100_000)
    )
    # Peaks need border < x <= W-1-border (likewise y): upstream's off-by-one drops one more row/column at the
    # top/left than at the bottom/right; kept so upstream outputs are reproduced. Never less than the radius.
    border: int = setting(2, "pixels at the image border where no keypoint is kept", range=(0, 256))
    temperature: float = setting(0.1, "soft-argmax temperature on the sigmoid scores", range=(1e-3, 10.0))

    @property
    def radius(self) -> int:
        return self.window_size // 2

    def validate(self) -> None:
        """Raise ValueError naming the first bad setting."""
        check(self)


def max_filter(x: torch.Tensor, window: int) -> torch.Tensor:
    """Max over the window x window neighbourhood of each pixel of an H x W map; borders never win."""
    if x.device.type == "cpu":
        # OpenCV's dilation is ~30x faster than torch's pools on a CPU and works in place on the
        # tensor's memory; its default border value is -inf for a dilation, like the pools' padding.
        kernel = np.ones((window, window), np.uint8)
        return torch.from_numpy(cv2.dilate(x.contiguous().numpy(), kernel))
    return separable_max_filter(x, window)


def separable_max_filter(x: torch.Tensor, window: int) -> torch.Tensor:
    """`max_filter` in torch for any device: two 1-D pools cost 2w comparisons per pixel instead of w^2."""
    r = window // 2
    rows = F.max_pool1d(x[None], window, stride=1, padding=r)
    return F.max_pool1d(rows.transpose(1, 2), window, stride=1, padding=r).transpose(1, 2)[0]


def simple_nms(scores: torch.Tensor, window: int) -> torch.Tensor:
    """SuperPoint-style NMS (two suppression rounds), as upstream: `scores` where a peak survives, else 0."""
    is_max = scores == max_filter(scores, window)
    for _ in range(2):
        suppressed = max_filter(is_max.float(), window) > 0
        rest = scores.masked_fill(suppressed, 0.0)
        is_max |= (rest == max_filter(rest, window)) & ~suppressed
    return scores.masked_fill(~is_max, 0.0)


def select_peaks(nms: torch.Tensor, cfg: DetectorConfig) -> torch.Tensor:
    """Integer (x, y) of the selected peaks as an N x 2 long tensor, best first."""
    h, w = nms.shape
    b = max(cfg.border, cfg.radius)  # the refinement window must stay inside the image
    if h <= 2 * b + 1 or w <= 2 * b + 1:
        return torch.zeros((0, 2), dtype=torch.long, device=nms.device)
    inner = torch.zeros_like(nms)
    inner[b + 1 : h - b, b + 1 : w - b] = nms[b + 1 : h - b, b + 1 : w - b]
    flat = inner.flatten()
    candidates = torch.nonzero(flat > cfg.score_threshold).squeeze(1)
    limit = cfg.max_keypoints if cfg.top_k <= 0 else min(cfg.top_k, cfg.max_keypoints)
    values = flat[candidates]
    order = torch.argsort(values, descending=True, stable=True)[:limit]
    idx = candidates[order]
    return torch.stack((idx % w, idx // w), dim=1)


def window_offsets(radius: int, device: torch.device) -> torch.Tensor:
    """(dx, dy) of every cell of the window, row-major, as a w^2 x 2 float tensor."""
    r = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    dy, dx = torch.meshgrid(r, r, indexing="ij")
    return torch.stack((dx.flatten(), dy.flatten()), dim=1)


def refine(scores: torch.Tensor, peaks: torch.Tensor, cfg: DetectorConfig) -> torch.Tensor:
    """Soft-argmax of the raw scores in the window around each peak: sub-pixel (x, y), N x 2 float."""
    w = scores.shape[1]
    offsets = window_offsets(cfg.radius, scores.device)
    cells = peaks[:, None, :] + offsets.long()[None]  # N x w^2 x 2, inside the image thanks to the border
    patch = scores.flatten()[cells[..., 1] * w + cells[..., 0]]
    weights = torch.softmax(patch / cfg.temperature, dim=1)
    return peaks.float() + weights @ offsets


def detect(scores: torch.Tensor, cfg: DetectorConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Sub-pixel keypoints (N x 2) and their re-sampled scores (N) from an H x W sigmoid score map."""
    peaks = select_peaks(simple_nms(scores, cfg.window_size), cfg)
    keypoints = refine(scores, peaks, cfg)
    h, w = scores.shape
    kp_scores = interpolate(pixels_of(scores[None]), keypoints, h, w)[:, 0]
    return keypoints, kp_scores


def describe_dense(descriptors: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
    """Descriptors from a per-pixel unit descriptor map (D x H x W), bilinear, normalised again."""
    _, h, w = descriptors.shape
    return F.normalize(interpolate(pixels_of(descriptors), keypoints, h, w), dim=1)
