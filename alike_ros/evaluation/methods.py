"""The feature methods compared: ALIKE weights (ours or upstream) and OpenCV's SIFT and ORB.

Every method takes an RGB uint8 image and returns keypoints (N x 2, OpenCV pixel convention) and
descriptors; every method matches with mutual nearest neighbours and no threshold (HPatches practice).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .. import extractors
from ..detection.dkd import DetectorConfig
from ..matching.matcher import Matcher, MatcherConfig
from ..model.alnet import MODEL_CONFIGS
from ..model.weights import bundled_weights_path

SHARED_ENV = "ALIKE_ROS_SHARED"
MAX_FEATURES = 5000  # cap for every method: upstream's HPatches n_limit, and SIFT/ORB's nfeatures
UPSTREAM_MODELS = tuple(MODEL_CONFIGS)  # upstream ships a checkpoint for every variant
# Mutual NN with no similarity floor: cosine of unit vectors is >= -1, so nothing is cut.
_MUTUAL_NN = MatcherConfig(min_similarity=-1.0, mutual=True, ratio=1.0)


@dataclass
class Detections:
    keypoints: np.ndarray  # N x 2 float32
    descriptors: np.ndarray  # N x D (float32 unit vectors, or uint8 binary for ORB)


class Method:
    """Base: a named detector/descriptor with its matcher."""

    name: str
    note: str = ""

    def detect(self, image: np.ndarray) -> Detections:
        raise NotImplementedError

    def match(self, a: Detections, b: Detections) -> np.ndarray:
        """M x 2 indices of mutual nearest neighbours."""
        return Matcher(_MUTUAL_NN)(a.descriptors, b.descriptors).indices


class ExtractorMethod(Method):
    """A model of the package (`alike_ros.extractors`): ours with any weights, or an upstream ALIKE checkpoint."""

    def __init__(self, name: str, model: str, weights: str | Path | None, note: str = "", top_k: int = -1):
        self.name, self.note = name, note + (f", top_k={top_k}" if top_k > 0 else "")
        # Otherwise upstream defaults (window 5, threshold 0.2); top_k > 0 compares at an equal keypoint budget,
        # so no threshold then (as upstream's own top-k mode): a threshold would leave some methods fewer points.
        # The strongest points, as upstream and SIFT keep theirs (benchmarks/bench_coverage.py measures the grid).
        detector = DetectorConfig(
            top_k=top_k, score_threshold=0.0 if top_k > 0 else 0.2, max_keypoints=MAX_FEATURES, selection="top"
        )
        self.extractor = extractors.build(model, extractors.Options(weights, "cpu", detector=detector))

    def detect(self, image: np.ndarray) -> Detections:
        features = self.extractor(image, color="rgb")
        return Detections(features.keypoints, features.descriptors)


class SiftMethod(Method):
    name = "SIFT"

    def __init__(self, nfeatures: int = MAX_FEATURES):
        self.note = f"OpenCV SIFT, nfeatures={nfeatures}, descriptors L2-normalised"
        self.sift = cv2.SIFT_create(nfeatures=nfeatures)

    def detect(self, image: np.ndarray) -> Detections:
        keypoints, desc = self.sift.detectAndCompute(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), None)
        return _to_detections(keypoints, desc, np.float32, normalise=True)


class OrbMethod(Method):
    name = "ORB"

    def __init__(self, nfeatures: int = MAX_FEATURES):
        self.note = f"OpenCV ORB, nfeatures={nfeatures}, Hamming mutual NN (BFMatcher crossCheck)"
        self.orb = cv2.ORB_create(nfeatures=nfeatures)
        self.matcher = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True)

    def detect(self, image: np.ndarray) -> Detections:
        keypoints, desc = self.orb.detectAndCompute(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), None)
        return _to_detections(keypoints, desc, np.uint8, normalise=False)

    def match(self, a: Detections, b: Detections) -> np.ndarray:
        if len(a.keypoints) == 0 or len(b.keypoints) == 0:
            return np.zeros((0, 2), np.int64)
        found = self.matcher.match(a.descriptors, b.descriptors)
        return np.array([(m.queryIdx, m.trainIdx) for m in found], np.int64).reshape(-1, 2)


def _to_detections(keypoints, desc, dtype, normalise: bool) -> Detections:
    points = np.array([k.pt for k in keypoints], np.float32).reshape(-1, 2)
    if desc is None:  # OpenCV returns None when it finds nothing
        return Detections(points, np.zeros((0, 32 if dtype == np.uint8 else 128), dtype))
    if normalise:
        desc = desc / np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-12)
    return Detections(points, desc.astype(dtype))


def _digest(path: Path) -> str:
    """Short content hash: says which weights a table was measured with while training keeps exporting."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def shared_folder(*parts: str) -> Path | None:
    """A path inside the folder ALIKE_ROS_SHARED names (the project's shared data: data/photos/eval,
    reference/weights); None when it is not set. An installed package assumes no repository layout."""
    root = os.environ.get(SHARED_ENV)
    return Path(root, *parts) if root else None


@dataclass
class Unavailable:
    """A method that cannot run here; reported as a row saying why instead of numbers."""

    name: str
    reason: str


def build_methods(
    names: list[str],
    model: str,
    weights: str | None,
    upstream_dir: Path | None,
    top_k: int = -1,
    handcrafted_top_k: int = -1,
) -> list[Method | Unavailable]:
    """Methods by name: `ours` (`model` with `weights`), any other model of the package by its name (with its
    bundled weights), `upstream-alike-X`, `sift`, `orb`; missing weights become Unavailable rows. `top_k` > 0
    makes every method of the package keep its k best keypoints instead of those above the threshold;
    `handcrafted_top_k` > 0 gives SIFT and ORB that `nfeatures` (their strongest k) instead of MAX_FEATURES."""
    nfeatures = handcrafted_top_k if handcrafted_top_k > 0 else MAX_FEATURES
    methods: list[Method | Unavailable] = []
    for name in names:
        if name == "ours" or name in extractors.names():
            label = f"ours ({model})" if name == "ours" else name
            model_name = model if name == "ours" else name
            path = Path(weights) if weights and name == "ours" else bundled_weights_path(model_name)
            if path.is_file():
                note = f"weights {path.name} (sha256 {_digest(path)})"
                methods.append(ExtractorMethod(label, model_name, path, note=note, top_k=top_k))
            else:
                methods.append(Unavailable(label, f"pending: {path} does not exist yet"))
        elif name.startswith("upstream-") and name.removeprefix("upstream-") in UPSTREAM_MODELS:
            variant = name.removeprefix("upstream-")
            path = upstream_dir / f"{variant}.pth" if upstream_dir else None
            if path is None:
                methods.append(Unavailable(f"upstream {variant}", f"skipped: no --upstream-dir (or {SHARED_ENV})"))
            elif path.is_file():
                methods.append(ExtractorMethod(f"upstream {variant}", variant, path, "upstream checkpoint", top_k))
            else:
                methods.append(Unavailable(f"upstream {variant}", f"skipped: {path} is absent"))
        elif name == "sift":
            methods.append(SiftMethod(nfeatures))
        elif name == "orb":
            methods.append(OrbMethod(nfeatures))
        else:
            models = ", ".join(extractors.names())
            raise ValueError(f"unknown method {name!r}: use ours, {models}, upstream-alike-{{t,s,n,l}}, sift, orb")
    return methods
