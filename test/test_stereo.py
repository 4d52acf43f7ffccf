"""Left-right matching of rectified stereo pairs (alike_ros.matching.stereo) and the sparse matcher under it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from conftest import make_textured_image

from alike_ros.matching.matcher import Matcher, MatcherConfig
from alike_ros.matching.stereo import (
    Calibration,
    StereoConfig,
    StereoMatches,
    candidates,
    match_epipolar,
    match_rectified,
    refine,
    right_from_left,
)

CONFIGS = [
    MatcherConfig(min_similarity=-1.0, mutual=True, ratio=1.0),
    MatcherConfig(min_similarity=0.1, mutual=True, ratio=0.95),
    MatcherConfig(min_similarity=-1.0, mutual=False, ratio=0.9),
    MatcherConfig(min_similarity=0.05, mutual=False, ratio=1.0),
]


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("config", CONFIGS)
def test_matching_candidate_pairs_gives_what_the_masked_matrix_gives(config):
    rng = np.random.default_rng(3)
    d0, d1 = unit(rng.normal(size=(300, 32))), unit(rng.normal(size=(250, 32)))
    allowed = rng.random((300, 250)) < 0.05
    allowed[7] = False  # a row without candidates
    allowed[:, 11] = False  # a column without candidates
    sim = d0 @ d1.T
    dense = Matcher(config).from_similarity(torch.from_numpy(np.where(allowed, sim, np.float32(-3.0))))
    rows, cols = np.nonzero(allowed)
    sparse = Matcher(config).from_pairs(rows, cols, sim[rows, cols])
    assert len(sparse) > 20
    np.testing.assert_array_equal(sparse.indices, dense.indices)
    np.testing.assert_allclose(sparse.similarity, dense.similarity, atol=1e-6)
    everything = np.nonzero(np.ones_like(allowed))
    np.testing.assert_array_equal(
        Matcher(config).from_pairs(*everything, sim[everything]).indices, Matcher(config)(d0, d1).indices
    )


def test_candidates_are_the_pairs_the_rectified_geometry_allows():
    rng = np.random.default_rng(5)
    left = np.c_[rng.uniform(0, 640, 400), rng.uniform(0, 480, 400)].astype(np.float32)
    right = np.c_[rng.uniform(0, 640, 380), rng.uniform(0, 480, 380)].astype(np.float32)
    config = StereoConfig(row_tolerance=1.5, min_disparity=2.0, max_disparity=90.0)
    dx = left[:, None, 0] - right[None, :, 0]
    dy = np.abs(left[:, None, 1] - right[None, :, 1])
    expected = set(zip(*np.nonzero((dy <= 1.5) & (dx >= 2.0) & (dx <= 90.0)), strict=True))
    found = set(zip(*candidates(left, right, config), strict=True))
    assert found == expected and len(found) > 50


def test_disparity_range_must_be_ordered():
    with pytest.raises(ValueError, match="min_disparity"):
        StereoConfig(min_disparity=10.0, max_disparity=5.0).validate()
    with pytest.raises(ValueError, match="refine_radius"):
        StereoConfig(refine_radius=-1).validate()


def test_depth_from_disparity():
    matches = StereoMatches(np.zeros((3, 2), np.int64), np.ones(3, np.float32), np.array([10.0, 20.0, 0.0], np.float32))
    np.testing.assert_allclose(matches.depth(fx=500.0, baseline=0.12), [6.0, 3.0, np.inf])


@pytest.fixture(scope="module")
def shifted_pair() -> tuple[np.ndarray, np.ndarray, float]:
    """A textured left image and its right view: every point DISPARITY px to the left, as a fronto-parallel plane."""
    left = cv2.resize(make_textured_image(), (640, 480), interpolation=cv2.INTER_CUBIC)
    disparity = 7.3
    right = cv2.warpAffine(left, np.float32([[1, 0, -disparity], [0, 1, 0]]), (640, 480), flags=cv2.INTER_CUBIC)
    return left, right, disparity


def test_a_rectified_pair_is_matched_on_its_rows_with_sub_pixel_disparities(shifted_pair):
    from alike_ros import extractors
    from alike_ros.detection.dkd import DetectorConfig

    left, right, disparity = shifted_pair
    extractor = extractors.build("alike-t", extractors.Options(None, "cpu", detector=DetectorConfig(top_k=500)))
    fl, fr = extractor(left), extractor(right)
    config = StereoConfig(row_tolerance=2.0, min_disparity=0.0, max_disparity=64.0)
    matches = match_rectified(fl.keypoints, fl.descriptors, fr.keypoints, fr.descriptors, MatcherConfig(), config)
    assert len(matches) > 50
    rows = np.abs(fl.keypoints[matches.indices[:, 0], 1] - fr.keypoints[matches.indices[:, 1], 1])
    assert rows.max() <= 2.0 and matches.disparity.min() >= 0.0
    refined = refine(left, right, fl.keypoints, fr.keypoints, matches, config)
    assert len(refined) >= 0.6 * len(matches)  # (smooth blobs: some patches too flat to place)
    keypoint_error = np.abs(matches.disparity - disparity)
    refined_error = np.abs(refined.disparity - disparity)
    # measured on the images, the disparity is far closer to the truth than the two keypoints' difference
    assert np.median(refined_error) < 0.1 and np.median(refined_error) < np.median(keypoint_error) / 2
    assert np.mean(refined_error <= 0.5) >= 0.95
    off = StereoConfig(row_tolerance=2.0, min_disparity=0.0, max_disparity=64.0, refine_radius=0)
    assert refine(left, right, fl.keypoints, fr.keypoints, matches, off) is matches


def test_a_disparity_range_that_excludes_the_truth_leaves_no_match(shifted_pair):
    from alike_ros import extractors
    from alike_ros.detection.dkd import DetectorConfig

    left, right, _ = shifted_pair
    extractor = extractors.build("alike-t", extractors.Options(None, "cpu", detector=DetectorConfig(top_k=300)))
    fl, fr = extractor(left), extractor(right)
    config = StereoConfig(min_disparity=20.0, max_disparity=64.0)
    loose = match_rectified(fl.keypoints, fl.descriptors, fr.keypoints, fr.descriptors, MatcherConfig(), config)
    refined = refine(left, right, fl.keypoints, fr.keypoints, loose, config)
    assert len(refined) <= 0.05 * len(fl.keypoints)  # wrong-range pairs do not survive the image check


def test_the_stereo_benchmark_judges_matches_by_the_ground_truth_disparity(shifted_pair, tmp_path):
    from alike_ros.evaluation.methods import ExtractorMethod, OrbMethod
    from alike_ros.evaluation.stereo import StereoPair, evaluate_stereo, stereo_pairs

    assert stereo_pairs(tmp_path) == []  # no data: no pairs (the CLI reports the benchmark as skipped)
    left, right, disparity = shifted_pair
    rgb = [cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) for image in (left, right)]
    truth = np.full(left.shape, disparity, np.float32)
    truth[:, :100] = np.nan  # unknown there: those matches are not judged
    pair = StereoPair("shifted", *rgb, truth)
    config = StereoConfig(max_disparity=64.0)
    summary = evaluate_stereo(ExtractorMethod("alike-t", "alike-t", None, top_k=500), [pair], MatcherConfig(), config)
    raw, refined = summary.keypoint_disparities, summary.refined
    assert 0 < raw.judged < raw.matches and refined.matches <= raw.matches
    assert refined.within[0] >= 0.95 and refined.correct[0] == round(refined.within[0] * refined.judged)
    wrong = StereoPair("wrong truth", *rgb, truth + 3.0)  # the benchmark must notice a disparity 3 px off
    assert (
        evaluate_stereo(
            ExtractorMethod("alike-t", "alike-t", None, top_k=500), [wrong], MatcherConfig(), config
        ).refined.within[0]
        < 0.05
    )
    assert "binary" in evaluate_stereo(OrbMethod(500), [pair], MatcherConfig(), config)


# ---------------------------------------------------------------- unrectified pairs: the epipolar check


def _rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    return cv2.Rodrigues(np.array([rx, ry, rz], np.float64))[0]


def _quaternion_xyzw(R: np.ndarray) -> np.ndarray:
    w = np.sqrt(max(1.0 + np.trace(R), 1e-12)) / 2
    return np.array([(R[2, 1] - R[1, 2]) / (4 * w), (R[0, 2] - R[2, 0]) / (4 * w), (R[1, 0] - R[0, 1]) / (4 * w), w])


@pytest.fixture
def unrectified_scene():
    """Points seen by two distorted cameras with a known pose, descriptors equal for the two views of one point."""
    rng = np.random.default_rng(3)
    K_left = np.array([[400.0, 0, 320], [0, 410, 240], [0, 0, 1]])
    K_right = np.array([[390.0, 0, 310], [0, 395, 250], [0, 0, 1]])
    D_left, D_right = np.array([-0.1, 0.02, 0, 0, 0]), np.array([-0.08, 0.01, 0.001, 0, 0])
    pose_R, pose_t = _rotation(0.02, -0.05, 0.01), np.array([0.12, 0.01, 0.005])  # right camera in the left frame
    points = np.c_[rng.uniform(-2, 2, 300), rng.uniform(-1.5, 1.5, 300), rng.uniform(2, 8, 300)]
    R, t = pose_R.T, -pose_R.T @ pose_t  # X_right = R X_left + t
    left = cv2.projectPoints(points, np.zeros(3), np.zeros(3), K_left, D_left)[0].reshape(-1, 2)
    right = cv2.projectPoints(points, cv2.Rodrigues(R)[0], t, K_right, D_right)[0].reshape(-1, 2)
    descriptors = rng.normal(size=(300, 64)).astype(np.float32)
    descriptors /= np.linalg.norm(descriptors, axis=1, keepdims=True)
    pose = " ".join(f"{v:.12g}" for v in (*pose_t, *_quaternion_xyzw(pose_R)))
    calibration = Calibration(K_left, D_left, K_right, D_right, *right_from_left(pose))
    return left, right, descriptors, points, calibration


def test_right_pose_is_the_right_cameras_pose_in_the_left_frame():
    R, t = right_from_left("0.1 0 0 0 0 0 1")  # a right camera 10 cm to the right, no rotation
    np.testing.assert_allclose(R, np.eye(3))
    np.testing.assert_allclose(R @ np.array([0.1, 0, 5]) + t, [0, 0, 5])  # its centre's ray, seen from the right
    for bad in ("", "1 2 3", "0 0 0 0 0 0 0", "a b c d e f g", "0 0 0 nan 0 0 1"):
        with pytest.raises(ValueError, match="right_pose"):
            right_from_left(bad)
    with pytest.raises(ValueError, match="right_pose"):
        StereoConfig(right_pose="1 2").validate()


def test_an_unrectified_pair_is_matched_on_its_epipolar_lines_with_triangulated_depth(unrectified_scene):
    left, right, descriptors, points, calibration = unrectified_scene
    order = np.random.default_rng(4).permutation(len(right))  # the right keypoints in another order
    found, depth = match_epipolar(
        left, descriptors, right[order], descriptors[order], MatcherConfig(), calibration, tolerance=1.0
    )
    assert len(found) == len(left)
    np.testing.assert_array_equal(order[found.indices[:, 1]], found.indices[:, 0])
    np.testing.assert_allclose(depth, points[found.indices[:, 0], 2], rtol=1e-4)
    np.testing.assert_allclose(found.disparity, left[found.indices[:, 0], 0] - right[order][found.indices[:, 1], 0])


def test_the_epipolar_check_rejects_a_look_alike_off_the_line(unrectified_scene):
    left, right, descriptors, _, calibration = unrectified_scene
    # the right view of point 0 is gone; a keypoint with its very descriptor sits 30 px off its epipolar line
    decoy = right[0] + np.array([0.0, 30.0])
    moved = np.r_[right[1:], decoy[None]]
    found, _ = match_epipolar(left, descriptors, moved, np.r_[descriptors[1:], descriptors[:1]], MatcherConfig(),
                              calibration, tolerance=2.0)  # fmt: skip
    assert 0 not in found.indices[:, 0] and len(found) == len(left) - 1
    plain = Matcher(MatcherConfig())(descriptors, np.r_[descriptors[1:], descriptors[:1]])
    assert [0, len(moved) - 1] in plain.indices.tolist()  # descriptors alone take the look-alike
