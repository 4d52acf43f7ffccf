"""Relative pose benchmark: the essential matrix from each method's matches between calibrated views, against the
ground-truth poses (Strecha, TUM), scored by the AUC of the pose error (SuperGlue's and LoFTR's protocol)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from . import metrics
from .benchmarks import Timer
from .methods import Method
from .realgeo import PoseScene


@dataclass
class PoseSummary:
    pairs: int
    auc: np.ndarray  # at metrics.POSE_AUC_DEGREES
    failed: int  # pairs without an estimate (fewer than 5 matches, or RANSAC found none)
    keypoints: float  # mean per image
    matches: float  # mean per pair
    inliers: float  # mean per pair: matches that pass RANSAC and the cheirality check
    ms_per_image: float = 0.0


def pair_error(scene: PoseScene, i: int, j: int, kp0: np.ndarray, kp1: np.ndarray) -> tuple[float, int]:
    """Pose error (degrees; inf without an estimate) and inlier count of matched keypoints of views i and j."""
    estimate = metrics.estimate_relative_pose(kp0, kp1, scene.views[i].camera, scene.views[j].camera)
    if estimate is None:
        return float("inf"), 0
    r, t, inliers = estimate
    return metrics.pose_error(*scene.truth(i, j), r, t), inliers


def evaluate_pose(method: Method, scenes: Iterable[PoseScene], timer: Timer) -> PoseSummary:
    """Each view is detected once; each pair of each scene is matched and its pose estimated."""
    errors, matches, inliers, keypoints = [], [], [], []
    for scene in scenes:
        detections = [timer.detect(method, view.image) for view in scene.views]
        keypoints += [len(d.keypoints) for d in detections]
        for i, j in scene.pairs:
            a, b = detections[i], detections[j]
            idx = method.match(a, b)
            error, count = pair_error(scene, i, j, a.keypoints[idx[:, 0]], b.keypoints[idx[:, 1]])
            errors.append(error)
            inliers.append(count)
            matches.append(len(idx))
    return PoseSummary(
        pairs=len(errors),
        auc=metrics.pose_auc(np.array(errors)),
        failed=int(np.isinf(errors).sum()),
        keypoints=float(np.mean(keypoints)),
        matches=float(np.mean(matches)),
        inliers=float(np.mean(inliers)),
    )
