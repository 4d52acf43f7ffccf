"""Stereo benchmark: left-right matches on rectified Middlebury pairs, judged by their ground-truth disparity.

Pairs (unpacked by `scripts/fetch_eval_data.sh`): Motorcycle (Middlebury 2014, from the scikit-image wheel's
data: left, right, disparity with inf where unknown) and Aloe (Middlebury 2006, from Debian's opencv-doc: aloeL,
aloeR, aloeGT with 0 where unknown). A match is correct within t px when its disparity is within t of the ground
truth at the left keypoint's pixel. Each method's matches are counted at each step of `matching.stereo`: the
descriptor matches on the rows (with the keypoints' own disparities), then those the images confirm (refined).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..matching.matcher import MatcherConfig
from ..matching.stereo import StereoConfig, StereoMatches, match_rectified, refine
from .methods import Method

MOTORCYCLE = (
    "scikit-image/motorcycle_left.png",
    "scikit-image/motorcycle_right.png",
    "scikit-image/motorcycle_disp.npz",
)
ALOE = ("opencv-doc/aloeL.jpg", "opencv-doc/aloeR.jpg", "opencv-doc/aloeGT.png")
THRESHOLDS = (1.0, 3.0)


@dataclass
class StereoPair:
    name: str
    left: np.ndarray  # H x W x 3 RGB uint8
    right: np.ndarray
    disparity: np.ndarray  # H x W float32 of the left image, NaN where unknown


def _rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def stereo_pairs(data_dir: Path) -> list[StereoPair]:
    """The pairs whose files are in `data_dir` (none: an empty list)."""
    pairs = []
    if all((data_dir / f).is_file() for f in MOTORCYCLE):
        left, right, disp = (data_dir / f for f in MOTORCYCLE)
        truth = np.load(disp)["arr_0"].astype(np.float32)
        pairs.append(StereoPair("Motorcycle", _rgb(left), _rgb(right), np.where(np.isfinite(truth), truth, np.nan)))
    if all((data_dir / f).is_file() for f in ALOE):
        left, right, disp = (data_dir / f for f in ALOE)
        truth = cv2.imread(str(disp), cv2.IMREAD_UNCHANGED).astype(np.float32)
        pairs.append(StereoPair("Aloe", _rgb(left), _rgb(right), np.where(truth > 0, truth, np.nan)))
    return pairs


@dataclass
class StepSummary:
    """One step's matches over the pairs: how many, how many have ground truth, and the share and count within
    each of THRESHOLDS px."""

    matches: int
    judged: int
    within: tuple[float, ...]
    correct: tuple[int, ...]


@dataclass
class StereoSummary:
    pairs: int
    keypoints: float  # per image
    keypoint_disparities: StepSummary  # descriptor matches on the rows
    refined: StepSummary  # those the images confirm, with the measured disparity
    ms_per_pair: float  # matching and refinement, not detection


def judge(matches: StereoMatches, left_keypoints: np.ndarray, truth: np.ndarray) -> tuple[int, np.ndarray]:
    """Matches with ground truth at their left keypoint's pixel, and their absolute disparity errors."""
    pixels = np.clip(np.round(left_keypoints[matches.indices[:, 0]]).astype(int), 0, np.array(truth.shape[::-1]) - 1)
    expected = truth[pixels[:, 1], pixels[:, 0]]
    known = np.isfinite(expected)
    return len(matches), np.abs(matches.disparity[known] - expected[known])


def _step(judged: list[tuple[int, np.ndarray]]) -> StepSummary:
    errors = np.concatenate([e for _, e in judged]) if judged else np.zeros(0)
    correct = tuple(int((errors <= t).sum()) for t in THRESHOLDS)
    within = tuple(c / max(len(errors), 1) for c in correct)
    return StepSummary(sum(n for n, _ in judged), len(errors), within, correct)


def evaluate_stereo(
    method: Method, pairs: list[StereoPair], matcher: MatcherConfig, stereo: StereoConfig
) -> StereoSummary | str:
    """Every pair through the method's detector, `match_rectified` and `refine`; a string when it cannot run."""
    raw, refined, keypoints, seconds = [], [], [], 0.0
    for pair in pairs:
        left, right = method.detect(pair.left), method.detect(pair.right)
        if left.descriptors.dtype != np.float32:
            return "binary descriptors: the stereo matcher compares unit float descriptors"
        keypoints += [len(left.keypoints), len(right.keypoints)]
        start = time.perf_counter()
        found = match_rectified(left.keypoints, left.descriptors, right.keypoints, right.descriptors, matcher, stereo)
        grey = [cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) for image in (pair.left, pair.right)]
        confirmed = refine(*grey, left.keypoints, right.keypoints, found, stereo)
        seconds += time.perf_counter() - start
        raw.append(judge(found, left.keypoints, pair.disparity))
        refined.append(judge(confirmed, left.keypoints, pair.disparity))
    return StereoSummary(len(pairs), float(np.mean(keypoints)), _step(raw), _step(refined), 1e3 * seconds / len(pairs))
