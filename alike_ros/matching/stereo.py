"""Left-right matching of a rectified stereo pair: descriptors compared only where the geometry allows a match, then
each match's disparity refined on the images themselves.

In a rectified pair a point of the left image lies on the same row of the right image, `disparity = x_left - x_right`
to the left of it, and `depth = fx * baseline / disparity`. The candidates are the pairs within `row_tolerance` rows
and a disparity in [min_disparity, max_disparity]; among them the matcher's rules apply unchanged (similarity floor,
mutual nearest neighbours, ratio test), so a repetitive texture elsewhere can neither win a match nor spoil the ratio
test of a good one.

Two keypoints detected independently in the two images are each off the true point by a fraction of a pixel, so
their difference is a noisy disparity. `refine` measures it instead: the left keypoint's patch is compared (zero-mean
normalised cross-correlation) with right patches along the same row around the matched keypoint, and a parabola
through the best score and its neighbours gives the sub-pixel position; the right patch found is then searched for
in the left image the same way, and a match is kept only where both directions agree and the correlation is high
(EVALUATION.md, Stereo, measures what each step buys).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..config import check, setting
from .matcher import Matcher, MatcherConfig, Matches


@dataclass
class StereoConfig:
    row_tolerance: float = setting(2.0, "largest row difference of a left-right match, pixels", range=(0.0, 100.0))
    min_disparity: float = setting(0.0, "smallest disparity x_left - x_right, pixels", range=(-1e4, 1e4))
    max_disparity: float = setting(256.0, "largest disparity x_left - x_right, pixels", range=(0.0, 1e4))
    refine_radius: int = setting(
        3, "half-size of the patches that refine each disparity on the images; 0: keypoint differences", range=(0, 15)
    )
    min_correlation: float = setting(
        0.8, "refined matches whose patches correlate (ZNCC) less are dropped", range=(-1.0, 1.0)
    )
    max_lr_difference: float = setting(
        0.25, "refined matches whose left-to-right and right-to-left disparities differ more are dropped, pixels",
        range=(0.0, 100.0),
    )  # fmt: skip

    def validate(self) -> None:
        check(self)
        if self.min_disparity > self.max_disparity:
            raise ValueError(f"min_disparity {self.min_disparity:g} is above max_disparity {self.max_disparity:g}")


@dataclass
class StereoMatches(Matches):
    disparity: np.ndarray  # M float32, x_left - x_right in pixels

    def depth(self, fx: float, baseline: float) -> np.ndarray:
        """Depth of each match along the left camera's axis, in the baseline's unit (inf at zero disparity)."""
        with np.errstate(divide="ignore"):
            return (fx * baseline / self.disparity).astype(np.float32)

    def subset(self, keep: np.ndarray, disparity: np.ndarray | None = None) -> StereoMatches:
        chosen = self.disparity if disparity is None else disparity
        return StereoMatches(self.indices[keep], self.similarity[keep], chosen[keep].astype(np.float32))


def candidates(left: np.ndarray, right: np.ndarray, config: StereoConfig) -> tuple[np.ndarray, np.ndarray]:
    """The (left, right) index pairs of left (N x 2) and right (M x 2) keypoints the rectified geometry lets match:
    rows within `row_tolerance`, disparity within its range. Found through the right keypoints sorted by row, so the
    cost grows with the pairs, not with N x M."""
    order = np.argsort(right[:, 1], kind="stable")
    right_rows = right[order, 1]
    lo = np.searchsorted(right_rows, left[:, 1] - config.row_tolerance, side="left")
    hi = np.searchsorted(right_rows, left[:, 1] + config.row_tolerance, side="right")
    counts = hi - lo
    li = np.repeat(np.arange(len(left)), counts)
    within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)  # 0, 1, ... in each band
    ri = order[np.repeat(lo, counts) + within]
    disparity = left[li, 0] - right[ri, 0]
    keep = (disparity >= config.min_disparity) & (disparity <= config.max_disparity)
    return li[keep], ri[keep]


def match_rectified(
    left_keypoints: np.ndarray,
    left_descriptors: np.ndarray,
    right_keypoints: np.ndarray,
    right_descriptors: np.ndarray,
    matcher: MatcherConfig,
    stereo: StereoConfig,
) -> StereoMatches:
    """Descriptor matches between the keypoints of a rectified pair, with the keypoints' disparities."""
    li, ri = candidates(left_keypoints, right_keypoints, stereo)
    similarity = np.einsum(
        "pd,pd->p", left_descriptors[li].astype(np.float32), right_descriptors[ri].astype(np.float32)
    )
    found = Matcher(matcher).from_pairs(li, ri, similarity)
    disparity = left_keypoints[found.indices[:, 0], 0] - right_keypoints[found.indices[:, 1], 0]
    return StereoMatches(found.indices, found.similarity, disparity.astype(np.float32))


def refine(
    left_grey: np.ndarray,
    right_grey: np.ndarray,
    left_keypoints: np.ndarray,
    right_keypoints: np.ndarray,
    matches: StereoMatches,
    config: StereoConfig,
) -> StereoMatches:
    """The matches whose disparity the images confirm, with that disparity (see the module's text); unchanged when
    `refine_radius` is 0. Images are single-channel, of the keypoints' pixels."""
    if config.refine_radius == 0 or len(matches) == 0:
        return matches
    left, right = np.float32(left_grey), np.float32(right_grey)
    xl, y = left_keypoints[matches.indices[:, 0], 0], left_keypoints[matches.indices[:, 0], 1]
    xr = right_keypoints[matches.indices[:, 1], 0]
    radius = config.refine_radius
    # y of the left keypoint on both sides: the images are rectified, the right keypoint's own row is noise.
    x_right, peak_right = _best_along_row(left, xl, right, xr, y, radius, search=3)
    x_left, peak_left = _best_along_row(right, x_right, left, xl, y, radius, search=2)
    disparity = xl - x_right
    keep = (
        np.isfinite(x_right)
        & np.isfinite(x_left)
        & (np.minimum(peak_right, peak_left) >= config.min_correlation)
        & (np.abs((x_left - x_right) - disparity) <= config.max_lr_difference)
        & (disparity >= config.min_disparity)
        & (disparity <= config.max_disparity)
    )
    return matches.subset(keep, disparity)


def _patches(image: np.ndarray, x: np.ndarray, y: np.ndarray, radius: int) -> np.ndarray:
    """N x P x P patches centred on (x, y), bilinear, borders replicated."""
    offsets = np.arange(-radius, radius + 1, dtype=np.float32)
    n, size = len(x), len(offsets)
    map_x = np.broadcast_to((x[:, None] + offsets)[:, None, :], (n, size, size)).astype(np.float32)
    map_y = np.broadcast_to((y[:, None] + offsets)[:, :, None], (n, size, size)).astype(np.float32)
    flat = cv2.remap(
        image, map_x.reshape(-1, size), map_y.reshape(-1, size), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return flat.reshape(n, size, size)


def _zero_mean_unit(patches: np.ndarray) -> np.ndarray:
    flat = patches.reshape(len(patches), -1)
    flat = flat - flat.mean(axis=1, keepdims=True)
    return flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-6)


def _best_along_row(
    source: np.ndarray, xs: np.ndarray, target: np.ndarray, xt: np.ndarray, y: np.ndarray, radius: int, search: int
) -> tuple[np.ndarray, np.ndarray]:
    """Where along row y of `target`, within `search` px of xt, the patch of `source` at (xs, y) correlates best:
    sub-pixel x (NaN where the best score is at the end of the search) and the best score."""
    template = _zero_mean_unit(_patches(source, xs, y, radius))
    shifts = np.arange(-search, search + 1)
    scores = np.stack(
        [np.einsum("np,np->n", template, _zero_mean_unit(_patches(target, xt + s, y, radius))) for s in shifts], axis=1
    )
    best = scores.argmax(axis=1)
    rows = np.arange(len(best))
    inner = (best > 0) & (best < len(shifts) - 1)
    before = scores[rows, np.clip(best - 1, 0, len(shifts) - 1)]
    after = scores[rows, np.clip(best + 1, 0, len(shifts) - 1)]
    peak = scores[rows, best]
    curvature = before - 2 * peak + after
    with np.errstate(divide="ignore", invalid="ignore"):
        offset = np.where(curvature < 0, 0.5 * (before - after) / curvature, 0.0)
    x = np.where(inner, xt + shifts[best] + offset, np.nan)
    return x.astype(np.float32), peak.astype(np.float32)
