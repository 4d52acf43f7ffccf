"""Training-time DKD: top-k NMS peaks refined by a soft-argmax that gradients flow through.

Unlike inference, refinement is always on and descriptors are always sampled bilinearly (as in the upstream
training code), and the score dispersity of each window is returned for the peaky loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..detection.dkd import DetectorConfig, select_peaks, simple_nms, window_offsets
from ..sampling import interpolate, pixels_of


@dataclass
class SoftKeypoints:
    """One image's keypoints; every tensor is differentiable with respect to the dense maps."""

    keypoints: torch.Tensor  # N x 2 sub-pixel (x, y)
    scores: torch.Tensor  # N, score map sampled at the keypoint
    dispersity: torch.Tensor  # N, softmax-weighted mean squared distance of the window cells / r^2
    descriptors: torch.Tensor  # N x D, unit length


def soft_detect(
    scores: torch.Tensor, descriptors: torch.Tensor, top_k: int, window_size: int, temperature: float, border: int = 2
) -> SoftKeypoints:
    """Detect on one image's sigmoid score map (H x W) and unit descriptor map (D x H x W)."""
    cfg = DetectorConfig.strongest(top_k, window_size=window_size, border=border)
    # peak selection is discrete, so it needs no graph
    peaks = select_peaks(simple_nms(scores.detach(), window_size), cfg)
    h, w = scores.shape
    offsets = window_offsets(cfg.radius, scores.device)
    cells = peaks[:, None, :] + offsets.long()[None]  # N x w^2 x 2, inside the image thanks to the border
    patch = scores.flatten()[cells[..., 1] * w + cells[..., 0]]
    weights = torch.softmax(patch / temperature, dim=1)
    shift = weights @ offsets  # N x 2 soft-argmax offset from the peak
    dist2 = ((offsets[None] - shift[:, None]) ** 2).sum(-1) / cfg.radius**2
    keypoints = peaks.float() + shift
    kp_scores = interpolate(pixels_of(scores[None]), keypoints, h, w)[:, 0]
    kp_desc = F.normalize(interpolate(pixels_of(descriptors), keypoints, h, w), dim=1)
    return SoftKeypoints(keypoints, kp_scores, (weights * dist2).sum(1), kp_desc)
