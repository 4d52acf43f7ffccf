"""Our network + DKD against the outputs of the upstream code on the upstream weights (../shared/reference)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import REFERENCE

from alike_ros.detection.dkd import DetectorConfig
from alike_ros.extractor import Extractor

CASES = sorted(p.stem for p in (REFERENCE / "outputs").glob("*.npz")) or ["absent"]
IMAGES = {
    "kitti_000100": "kitti_000100.png",
    "kitti_000101": "kitti_000101.png",
    "kitti_000102": "kitti_000102.png",
    "photo_valendas": "photo_valendas_640x480.png",
}


def nearest(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each point of a, the distance to and index of its nearest point of b."""
    dist = torch.cdist(torch.from_numpy(a).double(), torch.from_numpy(b).double())
    d, i = dist.min(dim=1)
    return d.numpy(), i.numpy()


def upstream_settings(settings: dict) -> DetectorConfig:
    """Upstream's selection: the strongest peaks (its top-k mode applies no threshold)."""
    top_k = settings["top_k"]
    threshold = 0.0 if top_k > 0 else settings["scores_th"]
    return DetectorConfig(top_k=top_k, score_threshold=threshold, max_keypoints=settings["n_limit"], selection="top")


def run_case(case: str, fast: bool, reference_dir: Path, upstream_weights):
    ref = np.load(reference_dir / "outputs" / f"{case}.npz")
    settings = json.loads(str(ref["settings"]))
    model = settings["model"]
    stem = case.removeprefix(f"{model}_").rsplit("_", 1)[0]
    image = cv2.imread(str(reference_dir / "images" / IMAGES[stem]))  # BGR, as upstream's demo reads it
    extractor = Extractor(model, upstream_weights(model), "cpu", detector=upstream_settings(settings), fast=fast)
    return ref, extractor, image


def assert_matches_reference(ref, features) -> None:
    d_ref, idx = nearest(ref["keypoints"], features.keypoints)
    d_ours, _ = nearest(features.keypoints, ref["keypoints"])
    found = d_ref < 0.01
    assert found.mean() >= 0.99, f"only {found.mean():.2%} of reference keypoints reproduced"
    assert (d_ours < 0.01).mean() >= 0.99, "we report keypoints the reference does not have"
    np.testing.assert_allclose(features.scores[idx[found]], ref["scores"][found], atol=1e-4)
    cosine = (features.descriptors[idx[found]] * ref["descriptors"][found]).sum(axis=1)
    assert cosine.min() >= 0.9999
    assert np.all(np.diff(features.scores) <= 0), "keypoints must come best first"


@pytest.mark.parametrize("case", CASES)
def test_fast_path_reproduces_upstream(case, reference_dir, upstream_weights):
    ref, extractor, image = run_case(case, True, reference_dir, upstream_weights)
    assert_matches_reference(ref, extractor(image, color="bgr"))
    if "scores_map" in ref.files:
        np.testing.assert_allclose(extractor.score_map(image, color="bgr"), ref["scores_map"], atol=1e-5)


@pytest.mark.parametrize("case", [c for c in CASES if c.startswith(("alike-t", "alike-n_photo"))])
def test_straightforward_port_reproduces_upstream(case, reference_dir, upstream_weights):
    """The dense path is the baseline the fast path is benchmarked against: it must be exact too."""
    ref, extractor, image = run_case(case, False, reference_dir, upstream_weights)
    assert_matches_reference(ref, extractor(image, color="bgr"))


def test_upstream_checkpoint_loads_with_every_key(upstream_weights):
    from alike_ros.model.weights import load_model, load_state_dict

    for model in ("alike-t", "alike-s", "alike-n", "alike-l"):
        state = load_state_dict(upstream_weights(model))
        net = load_model(model, upstream_weights(model))
        assert set(net.state_dict()) == set(state)
