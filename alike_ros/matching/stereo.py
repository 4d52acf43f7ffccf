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
    right_pose: str = setting(
        "", "unrectified pairs: the right camera's pose in the left camera's optical frame, 'x y z qx qy qz qw' (as "
        "tf2_echo LEFT RIGHT prints it), for the epipolar check; empty: mutual nearest neighbours only",
    )  # fmt: skip
    epipolar_tolerance: float = setting(
        2.0, "unrectified pairs: largest distance of a right keypoint from its left keypoint's epipolar line, pixels",
        range=(0.0, 100.0),
    )  # fmt: skip

    def validate(self) -> None:
        check(self)
        if self.min_disparity > self.max_disparity:
            raise ValueError(f"min_disparity {self.min_disparity:g} is above max_disparity {self.max_disparity:g}")
        if self.right_pose:
            right_from_left(self.right_pose)


def right_from_left(pose: str) -> tuple[np.ndarray, np.ndarray]:
    """R, t with X_right = R X_left + t, from the right camera's pose in the left frame ('x y z qx qy qz qw');
    ValueError says what is wrong with it."""
    try:
        values = np.array([float(v) for v in pose.replace(",", " ").split()], np.float64)
    except ValueError:
        values = np.zeros(0)
    if len(values) != 7 or not np.isfinite(values).all() or np.linalg.norm(values[3:]) < 1e-9:
        raise ValueError(f"right_pose {pose!r} is not 'x y z qx qy qz qw' (7 finite numbers, a non-zero quaternion)")
    x, y, z, w = values[3:] / np.linalg.norm(values[3:])
    pose_rotation = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
    return pose_rotation.T, -pose_rotation.T @ values[:3]


@dataclass(frozen=True)
class Calibration:
    """An unrectified pair: each camera's intrinsics and distortion (camera_info K, D, distortion model) and the right
    camera's pose, X_right = R X_left + t."""

    K_left: np.ndarray
    D_left: np.ndarray
    K_right: np.ndarray
    D_right: np.ndarray
    R: np.ndarray
    t: np.ndarray
    fisheye: bool = False  # camera_info's `equidistant` model

    def normalised(self, points: np.ndarray, right: bool) -> np.ndarray:
        """N x 2 pixels to undistorted normalised image coordinates."""
        K, D = (self.K_right, self.D_right) if right else (self.K_left, self.D_left)
        pts = points.reshape(-1, 1, 2).astype(np.float64)
        undistort = cv2.fisheye.undistortPoints if self.fisheye else cv2.undistortPoints
        return undistort(pts, K, D).reshape(-1, 2)


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


def match_epipolar(
    left_keypoints: np.ndarray,
    left_descriptors: np.ndarray,
    right_keypoints: np.ndarray,
    right_descriptors: np.ndarray,
    matcher: MatcherConfig,
    calibration: Calibration,
    tolerance: float,
) -> tuple[StereoMatches, np.ndarray]:
    """Descriptor matches of an unrectified pair among the pairs that fit the epipolar geometry (a right keypoint
    within `tolerance` px of its left keypoint's epipolar line), their column differences as disparity, and the
    depth of each along the left camera's axis, triangulated."""
    left = calibration.normalised(left_keypoints, right=False)
    right = calibration.normalised(right_keypoints, right=True)
    t = calibration.t
    essential = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]]) @ calibration.R
    lines = np.c_[left, np.ones(len(left))] @ essential.T  # in the right camera, normalised coordinates
    distance = np.abs(np.c_[right, np.ones(len(right))] @ lines.T) / np.maximum(
        np.linalg.norm(lines[:, :2], axis=1), 1e-12
    )  # M x N
    ri, li = np.nonzero(distance * calibration.K_right[0, 0] <= tolerance)
    similarity = np.einsum(
        "pd,pd->p", left_descriptors[li].astype(np.float32), right_descriptors[ri].astype(np.float32)
    )
    found = Matcher(matcher).from_pairs(li, ri, similarity)
    i0, i1 = found.indices.T
    disparity = left_keypoints[i0, 0] - right_keypoints[i1, 0]
    points = cv2.triangulatePoints(
        np.eye(3, 4), np.c_[calibration.R, calibration.t], left[i0].T.astype(np.float64), right[i1].T.astype(np.float64)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = (points[2] / points[3]).astype(np.float32)
    return StereoMatches(found.indices, found.similarity, disparity.astype(np.float32)), depth


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
