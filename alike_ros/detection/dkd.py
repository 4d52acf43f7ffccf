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
from .selection import SELECTIONS, choose, inside_mask


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
    selection: str = setting(
        "grid",
        "how the keypoint budget is spent: top, the strongest anywhere; grid, the best of every grid_cell cell "
        "first (an even quota), the rest of the budget to the strongest of the others",
        choices=SELECTIONS,
    )
    grid_cell: int = setting(
        64, "cell side of the grid selection, pixels of the image the network sees", range=(8, 4096)
    )
    # Peaks need border < x <= W-1-border (likewise y): upstream's off-by-one drops one more row/column at the
    # top/left than at the bottom/right; kept so upstream outputs are reproduced. Never less than the radius.
    border: int = setting(2, "pixels at the image border where no keypoint is kept", range=(0, 256))
    temperature: float = setting(0.1, "soft-argmax temperature on the sigmoid scores", range=(1e-3, 10.0))
    upscale: int = setting(
        2,
        "keynet only: Key.Net runs on the grey image upscaled this many times, for more precise points at about "
        "upscale^2 its network's time (window_size, border, grid_cell stay in the image's pixels)",
        range=(1, 4),
    )

    @property
    def radius(self) -> int:
        return self.window_size // 2

    @property
    def limit(self) -> int:
        """How many keypoints one image may keep: top_k when it is set, never more than max_keypoints."""
        return self.max_keypoints if self.top_k <= 0 else min(self.top_k, self.max_keypoints)

    def validate(self) -> None:
        """Raise ValueError naming the first bad setting."""
        check(self)

    @classmethod
    def strongest(cls, k: int, **settings) -> DetectorConfig:
        """The k strongest peaks anywhere, no threshold: upstream's top-k mode, what training selects and what
        `evaluate` compares every method at."""
        return cls(top_k=k, score_threshold=0.0, max_keypoints=k, selection="top", **settings)


def checked_detection(detector: DetectorConfig | None, max_side: int) -> DetectorConfig:
    """The detector settings (None: the defaults) once they and the downscaling `max_side` are valid, as every
    extractor checks them (`Extractor` and the families alike); a ValueError naming the first bad one."""
    detector = detector or DetectorConfig()
    detector.validate()
    if max_side < 0:
        raise ValueError(f"max_side must be >= 0, got {max_side}")
    return detector


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
    """SuperPoint-style NMS (two suppression rounds), as upstream: `scores` where a peak survives, else 0.

    On the CPU the rounds run in OpenCV (`nms_peaks_cpu`); on other devices in torch, with the same result."""
    if _cpu_map(scores):
        peaks = nms_peaks_cpu(scores.detach().contiguous().numpy(), window).view(np.bool_)
        return scores.masked_fill(~torch.from_numpy(peaks), 0.0)
    is_max = scores == max_filter(scores, window)
    for _ in range(2):
        suppressed = max_filter(is_max.float(), window) > 0
        rest = scores.masked_fill(suppressed, 0.0)
        is_max |= (rest == max_filter(rest, window)) & ~suppressed
    return scores.masked_fill(~is_max, 0.0)


def _cpu_map(scores: torch.Tensor) -> bool:
    """Whether the OpenCV/numpy path applies: a float32/64 map in CPU memory (finite, as sigmoid scores are)."""
    return scores.device.type == "cpu" and scores.dtype in (torch.float32, torch.float64)


def nms_peaks_cpu(scores: np.ndarray, window: int) -> np.ndarray:
    """`simple_nms`'s surviving peaks of an H x W float map as a 0/1 uint8 mask, in OpenCV and numpy.

    The same rounds as the torch version, so the same peaks exactly, with the masks kept as bytes (a dilation
    of a byte mask costs a fraction of a float one) and no full-map tensor built on the way."""
    kernel = np.ones((window, window), np.uint8)
    is_max = cv2.compare(scores, cv2.dilate(scores, kernel), cv2.CMP_EQ)  # 255 where a pixel is its window's max
    for _ in range(2):
        free = cv2.compare(cv2.dilate(is_max, kernel), 0, cv2.CMP_EQ)  # 255 outside every peak's window
        rest = scores * (free & 1)  # the scores there, 0 where suppressed
        is_max |= cv2.compare(rest, cv2.dilate(rest, kernel), cv2.CMP_EQ) & free
    return is_max & 1


def select_peaks_cpu(scores: torch.Tensor, cfg: DetectorConfig, allowed: np.ndarray | None = None) -> torch.Tensor:
    """`select_peaks(simple_nms(scores, window), cfg, allowed)` for a map on the CPU, without the NMS map: the peaks
    above the threshold inside the border (and the allowed pixels), found from the masks, then only those ranked."""
    s = scores.detach().contiguous().numpy()
    h, w = s.shape
    b = max(cfg.border, cfg.radius)
    if h <= 2 * b + 1 or w <= 2 * b + 1:
        return torch.zeros((0, 2), dtype=torch.long)
    peaks = nms_peaks_cpu(s, cfg.window_size).view(np.bool_)
    peaks[: b + 1], peaks[h - b :], peaks[:, : b + 1], peaks[:, w - b :] = False, False, False, False
    if allowed is not None:
        peaks &= allowed
    flat = np.flatnonzero(peaks)  # flat indices, in raster order as the torch path lists them
    # the threshold in the map's dtype, as torch compares a tensor with a Python float
    flat = flat[s.ravel()[flat] > s.dtype.type(cfg.score_threshold)]
    points = np.stack((flat % w, flat // w), axis=1)
    return torch.from_numpy(points[choose(points, s.ravel()[flat], cfg.limit, (h, w), cfg.selection, cfg.grid_cell)])


def select_peaks(nms: torch.Tensor, cfg: DetectorConfig, allowed: np.ndarray | None = None) -> torch.Tensor:
    """Integer (x, y) of the selected peaks as an N x 2 long tensor, best first; none outside `allowed` (H x W)."""
    h, w = nms.shape
    b = max(cfg.border, cfg.radius)  # the refinement window must stay inside the image
    if h <= 2 * b + 1 or w <= 2 * b + 1:
        return torch.zeros((0, 2), dtype=torch.long, device=nms.device)
    inner = torch.zeros_like(nms)
    inner[b + 1 : h - b, b + 1 : w - b] = nms[b + 1 : h - b, b + 1 : w - b]
    if allowed is not None:
        inner.masked_fill_(~torch.from_numpy(allowed).to(nms.device), 0.0)
    flat = inner.flatten()
    candidates = torch.nonzero(flat > cfg.score_threshold).squeeze(1)
    values = flat[candidates]
    points = torch.stack((candidates % w, candidates // w), dim=1)
    if cfg.selection == "top":  # on the device
        return points[torch.argsort(values, descending=True, stable=True)[: cfg.limit]]
    order = choose(points.cpu().numpy(), values.cpu().numpy(), cfg.limit, (h, w), cfg.selection, cfg.grid_cell)
    return points[torch.from_numpy(order).to(nms.device)]


def window_offsets(radius: int, device: torch.device) -> torch.Tensor:
    """(dx, dy) of every cell of the window, row-major, as a w^2 x 2 float tensor."""
    r = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    dy, dx = torch.meshgrid(r, r, indexing="ij")
    return torch.stack((dx.flatten(), dy.flatten()), dim=1)


def refine(scores: torch.Tensor, peaks: torch.Tensor, cfg: DetectorConfig) -> torch.Tensor:
    """Soft-argmax of the raw scores in the window around each peak: sub-pixel (x, y), N x 2 float."""
    w = scores.shape[1]
    offsets = window_offsets(cfg.radius, scores.device)
    steps = offsets[:, 1].long() * w + offsets[:, 0].long()  # the window's cells as flat index offsets
    # N x w^2 flat indices, inside the image thanks to the border: one gather
    patch = scores.flatten()[(peaks[:, 1] * w + peaks[:, 0])[:, None] + steps]
    weights = torch.softmax(patch / cfg.temperature, dim=1)
    return peaks.float() + weights @ offsets


def detect(
    scores: torch.Tensor, cfg: DetectorConfig, allowed: np.ndarray | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sub-pixel keypoints (N x 2) and their re-sampled scores (N) from an H x W sigmoid score map; `allowed`: an
    H x W bool map of the pixels keypoints may lie in (`selection.allowed_pixels`), None for all."""
    if _cpu_map(scores):
        scores = scores.contiguous()  # a no-op for the extractor's maps; refine and sampling read it flat
        peaks = select_peaks_cpu(scores, cfg, allowed)
    else:  # on a GPU: the same rounds in torch, on the device
        peaks = select_peaks(simple_nms(scores, cfg.window_size), cfg, allowed)
    keypoints = refine(scores, peaks, cfg)
    if allowed is not None:  # a refinement pulled into a masked pixel falls back to its peak, which is allowed
        outside = ~torch.from_numpy(inside_mask(keypoints.cpu().numpy(), allowed)).to(keypoints.device)
        keypoints[outside] = peaks[outside].float()
    h, w = scores.shape
    kp_scores = interpolate(pixels_of(scores[None]), keypoints, h, w)[:, 0]
    return keypoints, kp_scores


def describe_dense(descriptors: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
    """Descriptors from a per-pixel unit descriptor map (D x H x W), bilinear, normalised again."""
    _, h, w = descriptors.shape
    return F.normalize(interpolate(pixels_of(descriptors), keypoints, h, w), dim=1)
