"""Metrics of local features on image pairs, as in the ALIKE paper and HPatches practice (pure numpy/OpenCV).

Pixel convention everywhere: (x, y), x right, y down, integer = pixel centre (OpenCV's). A homography H maps
points of the first image to the second; `size` is (height, width). A relative pose (R, t) maps a point of the
first camera's frame to the second's, x1 = R x0 + t.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.sparse.csgraph import maximum_bipartite_matching
from scipy.spatial import cKDTree

from ..geometry import inside, warp_points

MMA_THRESHOLDS = (1, 2, 3, 4, 5)  # px, as in HPatches MMA curves
REAL_MMA_THRESHOLDS = tuple(range(1, 11))  # px, the ALIKE paper's HPatches curves
MHA_THRESHOLDS = (1, 3, 5)  # px of mean corner error
CORRECT_PX = 3.0  # a keypoint repeats / a match is correct within this distance (SuperPoint, D2-Net practice)
RANSAC_PX = 3.0  # cv2.findHomography's default reprojection threshold, as upstream's eval
F_RANSAC_PX = 1.0  # epipolar distance for the fundamental matrix on video frames
TRACK_ROUNDTRIP_PX = 0.5  # a Lucas-Kanade track counts as ground truth only if it comes back this close
POSE_RANSAC_PX = 1.0  # epipolar threshold of the essential matrix, over the mean focal length (SuperGlue's)
POSE_CONFIDENCE = 0.99999  # RANSAC confidence of the essential matrix (SuperGlue's)
POSE_AUC_DEGREES = (5, 10, 20)  # the pose AUC thresholds peers report on MegaDepth and ScanNet
SEED = 0  # OpenCV's RANSAC draws from its global RNG; reseeding makes every estimate reproducible


def match_errors(kp0: np.ndarray, kp1: np.ndarray, matches: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Distance (px, in the second image) between each matched keypoint and where H sends its partner."""
    if len(matches) == 0:
        return np.zeros(0)
    projected = warp_points(h, kp0[matches[:, 0]])
    return np.linalg.norm(projected - kp1[matches[:, 1]], axis=1)


def mma(errors: np.ndarray, thresholds: tuple[float, ...] = MMA_THRESHOLDS) -> np.ndarray:
    """Fraction of matches with error <= t for each t; a pair without matches scores 0 (HPatches)."""
    if len(errors) == 0:
        return np.zeros(len(thresholds))
    return np.array([(errors <= t).mean() for t in thresholds])


def nearest_distance(points: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Distance from each point to its nearest neighbour among `others` (brute force in OpenCV: no N x M
    matrix in Python memory, which at 5000 x 5000 would cost hundreds of MB)."""
    found = cv2.BFMatcher(cv2.NORM_L2).match(np.float32(points), np.float32(others))
    dist = np.full(len(points), np.inf)
    dist[[m.queryIdx for m in found]] = [m.distance for m in found]
    return dist


def _shared(kp0: np.ndarray, kp1: np.ndarray, h: np.ndarray, size0: tuple[int, int], size1: tuple[int, int]):
    """Keypoints of each image that the other image also sees, with their positions in the other image."""
    fwd = warp_points(h, kp0)
    bwd = warp_points(np.linalg.inv(h), kp1)
    keep0, keep1 = inside(fwd, size1), inside(bwd, size0)
    return fwd[keep0], kp1[keep1], keep0, keep1


def repeatability(
    kp0: np.ndarray,
    kp1: np.ndarray,
    h: np.ndarray,
    size0: tuple[int, int],
    size1: tuple[int, int],
    threshold: float = CORRECT_PX,
) -> float:
    """SuperPoint's repeatability: keypoints in the shared area with a keypoint of the other image within
    `threshold` after warping, counted in both directions, over all keypoints in the shared area."""
    fwd, kp1_shared, keep0, keep1 = _shared(kp0, kp1, h, size0, size1)
    total = len(fwd) + len(kp1_shared)
    if len(fwd) == 0 or len(kp1_shared) == 0:
        return 0.0
    repeated = (nearest_distance(fwd, kp1_shared) <= threshold).sum()
    repeated += (nearest_distance(kp1_shared, fwd) <= threshold).sum()
    return float(repeated / total)


def matching_score(
    kp0: np.ndarray,
    kp1: np.ndarray,
    matches: np.ndarray,
    h: np.ndarray,
    size0: tuple[int, int],
    size1: tuple[int, int],
    threshold: float = CORRECT_PX,
) -> float:
    """Correct matches over the mean number of keypoints the two images share (LF-Net / D2-Net practice)."""
    _, _, keep0, keep1 = _shared(kp0, kp1, h, size0, size1)
    shared = (keep0.sum() + keep1.sum()) / 2
    if shared == 0:
        return 0.0
    correct = (match_errors(kp0, kp1, matches, h) <= threshold).sum()
    return float(correct / shared)


def estimate_homography(pts0: np.ndarray, pts1: np.ndarray, threshold: float = RANSAC_PX) -> np.ndarray | None:
    """RANSAC homography from matched points (None when it fails or there are fewer than 4 matches)."""
    if len(pts0) < 4:
        return None
    cv2.setRNGSeed(SEED)
    h, _ = cv2.findHomography(np.float64(pts0), np.float64(pts1), cv2.RANSAC, threshold)
    return h


def corner_error(h_true: np.ndarray, h_est: np.ndarray | None, size: tuple[int, int]) -> float:
    """Mean distance over the 4 corner pixels of the first image between the true and estimated warps."""
    if h_est is None:
        return float("inf")
    hgt, wid = size
    corners = np.array([[0, 0], [wid - 1, 0], [0, hgt - 1], [wid - 1, hgt - 1]], np.float64)
    with np.errstate(invalid="ignore"):  # a corner either warp sends behind its camera: inf - inf
        err = np.linalg.norm(warp_points(h_true, corners) - warp_points(h_est, corners), axis=1).mean()
    return float(err) if np.isfinite(err) else float("inf")


def homography_accuracy(errors: np.ndarray, thresholds: tuple[float, ...] = MHA_THRESHOLDS) -> np.ndarray:
    """Fraction of pairs whose corner error is <= t, for each t."""
    errors = np.asarray(errors, np.float64)
    if len(errors) == 0:
        return np.zeros(len(thresholds))
    return np.array([(errors <= t).mean() for t in thresholds])


def fundamental_inliers(pts0: np.ndarray, pts1: np.ndarray, threshold: float = F_RANSAC_PX) -> tuple[int, float]:
    """Inlier count and inlier ratio of a RANSAC fundamental matrix on the matches ((0, 0.0) below 8 matches)."""
    if len(pts0) < 8:
        return 0, 0.0
    cv2.setRNGSeed(SEED)
    f, mask = cv2.findFundamentalMat(np.float64(pts0), np.float64(pts1), cv2.FM_RANSAC, threshold, 0.999)
    if f is None or mask is None:
        return 0, 0.0
    count = int(mask.ravel().astype(bool).sum())
    return count, count / len(pts0)


def track(gray0: np.ndarray, gray1: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where `points` of uint8 frame 0 lie in frame 1 (pyramidal Lucas-Kanade), and which of them to trust: those
    whose backward track returns within TRACK_ROUNDTRIP_PX. The ground truth of real video, where no homography
    relates the frames."""
    if len(points) == 0:
        return np.zeros((0, 2), np.float32), np.zeros(0, bool)
    lk = {"winSize": (21, 21), "maxLevel": 3}
    start = np.float32(points).reshape(-1, 1, 2)
    ahead, found, _ = cv2.calcOpticalFlowPyrLK(gray0, gray1, start, None, **lk)
    back, returned, _ = cv2.calcOpticalFlowPyrLK(gray1, gray0, ahead, None, **lk)
    roundtrip = np.linalg.norm((back - start)[:, 0], axis=1)
    return ahead[:, 0], (found[:, 0] == 1) & (returned[:, 0] == 1) & (roundtrip <= TRACK_ROUNDTRIP_PX)


def correct_matches(truth: np.ndarray, trusted: np.ndarray, kp1: np.ndarray, matches: np.ndarray, px=CORRECT_PX):
    """How many matches (M x 2 indices) land within px of the true position of their keypoint of image 0
    (`truth`, N x 2 in image 1), counting only keypoints whose truth is `trusted`."""
    if len(matches) == 0:
        return 0
    error = np.linalg.norm(truth[matches[:, 0]] - kp1[matches[:, 1]], axis=1)
    return int(((error <= px) & trusted[matches[:, 0]]).sum())


def max_correct_matches(truth: np.ndarray, trusted: np.ndarray, kp1: np.ndarray, px: float = CORRECT_PX) -> int:
    """The most correct matches any descriptor could give at these keypoints: a maximum one-to-one matching of
    image 0's trusted keypoints to image 1's keypoints within px of their true position."""
    if not trusted.any() or len(kp1) == 0:
        return 0
    near = cKDTree(truth[trusted]).sparse_distance_matrix(cKDTree(kp1), px, output_type="coo_matrix").tocsr()
    near.data[:] = 1  # a pair at distance 0 is stored with the value 0: every stored pair is an edge
    return int((maximum_bipartite_matching(near, perm_type="column") >= 0).sum())


def relative_pose(r0: np.ndarray, c0: np.ndarray, r1: np.ndarray, c1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(R, t) from camera 0's frame to camera 1's, for cameras given by their camera-to-world rotation R_i and
    centre C_i (a world point X is at R_i^T (X - C_i) in camera i's frame: Strecha's and TUM's convention)."""
    return r1.T @ r0, r1.T @ (c0 - c1)


def estimate_relative_pose(
    pts0: np.ndarray, pts1: np.ndarray, k0: np.ndarray, k1: np.ndarray, threshold: float = POSE_RANSAC_PX
) -> tuple[np.ndarray, np.ndarray, int] | None:
    """R, unit t and inlier count from matched pixels of two calibrated cameras (no distortion): a RANSAC essential
    matrix on normalised coordinates, then the cheirality check; None below 5 matches or when it fails. Of several
    five-point solutions, the one the most matches pass (SuperGlue's and LoFTR's evaluation)."""
    if len(pts0) < 5:
        return None
    normalised = [
        (np.c_[np.float64(p), np.ones(len(p))] @ np.linalg.inv(k).T)[:, :2] for p, k in ((pts0, k0), (pts1, k1))
    ]
    focal = np.mean([k0[0, 0], k0[1, 1], k1[0, 0], k1[1, 1]])
    cv2.setRNGSeed(SEED)
    e, mask = cv2.findEssentialMat(*normalised, np.eye(3), cv2.RANSAC, POSE_CONFIDENCE, threshold / focal)
    if e is None or mask is None:
        return None
    best = None
    for candidate in np.split(e, len(e) // 3):
        count, r, t, _ = cv2.recoverPose(candidate, *normalised, np.eye(3), mask=mask.copy())
        if best is None or count > best[2]:
            best = (r, t.ravel(), int(count))
    return best


def rotation_angle(r: np.ndarray) -> float:
    """Angle of a rotation matrix, degrees."""
    return float(np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1.0, 1.0))))


def pose_error(r_true: np.ndarray, t_true: np.ndarray, r_est: np.ndarray, t_est: np.ndarray) -> float:
    """max(rotation error, translation direction error), degrees. An essential matrix gives t up to scale and
    sign, so the direction error is the smaller angle to +t or -t (SuperGlue's and LoFTR's evaluation)."""
    cos = np.dot(t_true, t_est) / max(np.linalg.norm(t_true) * np.linalg.norm(t_est), 1e-12)
    angle_t = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    return max(rotation_angle(r_true.T @ r_est), float(min(angle_t, 180.0 - angle_t)))


def pose_auc(errors: np.ndarray, thresholds: tuple[float, ...] = POSE_AUC_DEGREES) -> np.ndarray:
    """Area under the cumulative error curve up to each threshold, over the threshold (SuperGlue's pose AUC): the
    recall rises linearly between sorted errors from (0, 0); a failed pair (error inf) never counts."""
    errors = np.sort(np.asarray(errors, np.float64))
    if len(errors) == 0:
        return np.zeros(len(thresholds))
    recall = np.r_[0.0, np.arange(1, len(errors) + 1) / len(errors)]
    errors = np.r_[0.0, errors]
    aucs = []
    for limit in thresholds:
        last = np.searchsorted(errors, limit)
        e, r = np.r_[errors[:last], limit], np.r_[recall[:last], recall[last - 1]]
        aucs.append(np.sum(np.diff(e) * (r[:-1] + r[1:]) / 2) / limit)
    return np.array(aucs)
