"""The three benchmarks: synthetic homography pairs, opencv-doc's graf1/graf3, and a real video.

Data for the last two comes from Debian packages that `scripts/fetch_eval_data.sh` unpacks into a cache
folder; nothing is downloaded here. A benchmark whose data is absent is reported as skipped.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..extractor import read_rgb
from . import metrics
from .methods import Detections, Method
from .synthetic import Pair

FETCH_COMMAND = "scripts/fetch_eval_data.sh"
GRAF_FILES = ("opencv-doc/graf1.png", "opencv-doc/graf3.png", "opencv-doc/H1to3p.xml")
VIDEO_FILE = "visp-images-data/cube.mpeg"


@dataclass
class PairResult:
    kind: str
    keypoints: tuple[int, int]
    matches: int
    errors: np.ndarray  # px, of each match under the true homography (metrics.match_errors)
    repeatability: float
    matching_score: float
    corner_error: float

    @property
    def mma(self) -> np.ndarray:
        """Fraction correct at metrics.MMA_THRESHOLDS."""
        return metrics.mma(self.errors)


@dataclass
class Timer:
    """Mean milliseconds per detected image."""

    total: float = 0.0
    count: int = 0

    def detect(self, method: Method, image: np.ndarray) -> Detections:
        start = time.perf_counter()
        result = method.detect(image)
        self.total += (time.perf_counter() - start) * 1e3
        self.count += 1
        return result

    @property
    def mean(self) -> float:
        return self.total / max(self.count, 1)


def evaluate_pair(method: Method, pair: Pair, det0: Detections, det1: Detections) -> PairResult:
    """All homography metrics of one pair from the method's detections in both images."""
    kp0, kp1 = det0.keypoints, det1.keypoints
    matches = method.match(det0, det1)
    size0, size1 = pair.image0.shape[:2], pair.image1.shape[:2]
    h_est = metrics.estimate_homography(kp0[matches[:, 0]], kp1[matches[:, 1]])
    return PairResult(
        kind=pair.kind,
        keypoints=(len(kp0), len(kp1)),
        matches=len(matches),
        errors=metrics.match_errors(kp0, kp1, matches, pair.homography),
        repeatability=metrics.repeatability(kp0, kp1, pair.homography, size0, size1),
        matching_score=metrics.matching_score(kp0, kp1, matches, pair.homography, size0, size1),
        corner_error=metrics.corner_error(pair.homography, h_est, size0),
    )


def evaluate_homography_benchmark(
    method: Method, groups: Iterable[tuple[np.ndarray, list[Pair]]], timer: Timer
) -> list[PairResult]:
    """Each group shares its reference image, which is detected once."""
    results = []
    for reference, pairs in groups:
        det0 = timer.detect(method, reference)
        results += [evaluate_pair(method, pair, det0, timer.detect(method, pair.image1)) for pair in pairs]
    return results


@dataclass
class HomographySummary:
    pairs: int
    mma: np.ndarray  # fraction correct at `thresholds`
    mha: np.ndarray  # fraction at metrics.MHA_THRESHOLDS
    repeatability: float
    matching_score: float
    keypoints: float  # mean per image
    matches: float  # mean per pair
    ms_per_image: float = 0.0
    thresholds: tuple[float, ...] = metrics.MMA_THRESHOLDS  # px


def summarise(
    results: list[PairResult], kinds: str = "iv", thresholds: tuple[float, ...] = metrics.MMA_THRESHOLDS
) -> HomographySummary | None:
    """Means over the pairs whose kind is in `kinds`, MMA at `thresholds` px (None if there are no such pairs)."""
    chosen = [r for r in results if r.kind in kinds]
    if not chosen:
        return None
    return HomographySummary(
        pairs=len(chosen),
        thresholds=thresholds,
        mma=np.mean([metrics.mma(r.errors, thresholds) for r in chosen], axis=0),
        mha=metrics.homography_accuracy(np.array([r.corner_error for r in chosen])),
        repeatability=float(np.mean([r.repeatability for r in chosen])),
        matching_score=float(np.mean([r.matching_score for r in chosen])),
        keypoints=float(np.mean([k for r in chosen for k in r.keypoints])),
        matches=float(np.mean([r.matches for r in chosen])),
    )


def graf_pair(data_dir: Path) -> Pair | None:
    """opencv-doc's graf1 -> graf3 (Oxford 'graffiti', a strong viewpoint change) with H1to3p; None if absent."""
    paths = [data_dir / f for f in GRAF_FILES]
    if not all(p.is_file() for p in paths):
        return None
    image0, image1 = (read_rgb(p) for p in paths[:2])
    storage = cv2.FileStorage(str(paths[2]), cv2.FILE_STORAGE_READ)
    homography = storage.getNode("H13").mat().astype(np.float64)
    storage.release()
    return Pair("graf1-graf3", "v", image0, image1, homography)


def video_frames(data_dir: Path, step: int = 1, limit: int = 0) -> list[np.ndarray] | None:
    """Every `step`-th RGB frame of the video (the first `limit` of those if > 0); None if the file is absent."""
    path = data_dir / VIDEO_FILE
    if not path.is_file():
        return None
    capture = cv2.VideoCapture(str(path))
    frames, index = [], 0
    while not limit or len(frames) < limit:
        ok, frame = capture.read()
        if not ok:
            break
        if index % step == 0:
            frames.append(np.ascontiguousarray(frame[:, :, ::-1]))
        index += 1
    capture.release()
    return frames


@dataclass
class VideoSummary:
    pairs: int
    keypoints: float  # mean per frame
    matches: float  # mean per pair
    inliers: float  # mean RANSAC-F inliers per pair
    inlier_ratio: float  # mean over pairs of inliers / matches
    per_pair_inliers: list[int] = field(default_factory=list)
    ms_per_image: float = 0.0


def evaluate_video(method: Method, frames: Iterable[np.ndarray], timer: Timer) -> VideoSummary:
    """Match each frame with the next one; score each pair by a RANSAC fundamental matrix."""
    detections = [timer.detect(method, frame) for frame in frames]
    inliers, ratios, matches = [], [], []
    for a, b in zip(detections[:-1], detections[1:], strict=True):
        idx = method.match(a, b)
        count, ratio = metrics.fundamental_inliers(a.keypoints[idx[:, 0]], b.keypoints[idx[:, 1]])
        inliers.append(count)
        ratios.append(ratio)
        matches.append(len(idx))
    return VideoSummary(
        pairs=len(inliers),
        keypoints=float(np.mean([len(d.keypoints) for d in detections])),
        matches=float(np.mean(matches)),
        inliers=float(np.mean(inliers)),
        inlier_ratio=float(np.mean(ratios)),
        per_pair_inliers=inliers,
    )
