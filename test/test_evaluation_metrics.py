"""Metric code on cases with known answers."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from alike_ros import geometry
from alike_ros.evaluation import metrics

SIZE = (120, 160)  # (height, width)


def grid_points(step: int = 10) -> np.ndarray:
    ys, xs = np.mgrid[5 : SIZE[0] - 5 : step, 5 : SIZE[1] - 5 : step]
    return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)


def shift(dx: float, dy: float) -> np.ndarray:
    return np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1]], np.float64)


def test_identity_pair_is_perfect():
    kp = grid_points()
    matches = np.stack([np.arange(len(kp))] * 2, axis=1)
    errors = metrics.match_errors(kp, kp, matches, np.eye(3))
    np.testing.assert_array_equal(metrics.mma(errors), np.ones(5))
    h_est = metrics.estimate_homography(kp, kp)
    assert metrics.corner_error(np.eye(3), h_est, SIZE) == pytest.approx(0.0, abs=1e-6)
    assert metrics.repeatability(kp, kp, np.eye(3), SIZE, SIZE) == 1.0
    assert metrics.matching_score(kp, kp, matches, np.eye(3), SIZE, SIZE) == 1.0
    np.testing.assert_array_equal(metrics.homography_accuracy([0.0]), [1.0, 1.0, 1.0])


def test_known_integer_shift():
    kp0 = grid_points()
    kp1 = kp0 + np.float32([3, -2])
    matches = np.stack([np.arange(len(kp0))] * 2, axis=1)
    h = shift(3, -2)
    np.testing.assert_allclose(metrics.match_errors(kp0, kp1, matches, h), 0.0, atol=1e-9)
    # Against the identity the same matches are all sqrt(13) ~ 3.6 px off: correct from 4 px on only.
    np.testing.assert_array_equal(metrics.mma(metrics.match_errors(kp0, kp1, matches, np.eye(3))), [0, 0, 0, 1, 1])
    assert metrics.corner_error(h, metrics.estimate_homography(kp0, kp1), SIZE) == pytest.approx(0.0, abs=1e-6)
    assert metrics.corner_error(h, np.eye(3), SIZE) == pytest.approx(np.sqrt(13))


def test_one_wrong_match_lowers_mma_by_its_share():
    kp = grid_points()
    n = len(kp)
    matches = np.stack([np.arange(n)] * 2, axis=1)
    matches[0, 1] = n - 1  # a far-away partner: wrong at every threshold
    np.testing.assert_allclose(metrics.mma(metrics.match_errors(kp, kp, matches, np.eye(3))), 1 - 1 / n)


def test_pair_without_matches_scores_zero_and_failed_estimate_is_infinite():
    errors = metrics.match_errors(grid_points(), grid_points(), np.zeros((0, 2), np.int64), np.eye(3))
    np.testing.assert_array_equal(metrics.mma(errors), np.zeros(5))
    assert metrics.corner_error(np.eye(3), None, SIZE) == np.inf
    np.testing.assert_array_equal(metrics.homography_accuracy([np.inf, 0.5, 2.0, 4.0]), [0.25, 0.5, 0.75])


def test_repeatability_on_a_known_set():
    kp0 = np.float32([[10, 10], [50, 50], [100, 20], [150, 100]])
    # Two points repeat within 3 px (the second at 2.9 px), one is 4 px off, one lies outside after the shift.
    kp1 = np.float32([[20, 10], [60 + 2.9, 50], [110, 24], [5, 5]])
    h = shift(10, 0)  # kp0[3] -> (160, 100): outside a 160-wide image; kp1[3] -> (-5, 5): outside image 0
    # Shared: 3 of image 0 and 3 of image 1; repeated: 2 in each direction.
    assert metrics.repeatability(kp0, kp1, h, SIZE, SIZE) == pytest.approx(4 / 6)
    matches = np.array([[0, 0], [1, 1], [2, 2]])
    assert metrics.matching_score(kp0, kp1, matches, h, SIZE, SIZE) == pytest.approx(2 / 3)


def test_warp_and_inside_follow_the_pixel_centre_convention():
    pts = np.array([[0.0, 0.0], [159.0, 119.0], [159.6, 0.0], [-0.5, -0.5], [158.8, 0.2]])
    np.testing.assert_array_equal(geometry.inside(pts, SIZE), [True, True, False, True, True])
    # margin 0.5: between the outermost pixel centres (training's bilinear sampling)
    np.testing.assert_array_equal(geometry.inside(pts, SIZE, margin=0.5), [True, True, False, False, True])
    h = np.array([[2, 0, 1], [0, 2, 1], [0, 0, 1]], np.float64)  # 2x about the corner of the top-left pixel
    np.testing.assert_allclose(geometry.warp_points(h, [[0.5, 0.5]]), [[2.0, 2.0]])
    behind = np.array([[1, 0, 0], [0, 1, 0], [0, -1, 0]], np.float64)  # w <= 0 for y >= 0
    assert not np.isfinite(geometry.warp_points(behind, [[3.0, 4.0]])).any()
    # the torch branch (training losses) gives the same points, differentiably, and the same masks
    points = torch.tensor(pts, dtype=torch.float64, requires_grad=True)
    warped = geometry.warp_points(torch.from_numpy(h), points)
    np.testing.assert_allclose(warped.detach().numpy(), geometry.warp_points(h, pts))
    warped.sum().backward()
    assert points.grad is not None
    assert geometry.inside(points.detach(), SIZE, margin=0.5).tolist() == [True, True, False, False, True]


def test_fundamental_inliers_separate_outliers():
    rng = np.random.default_rng(0)
    # A planar scene seen by a camera that translates: points move rigidly; 20 % random outliers.
    pts0 = rng.uniform(0, 300, (100, 2))
    pts1 = pts0 + [8.0, 1.0]
    pts1[:20] = rng.uniform(0, 300, (20, 2))
    count, ratio = metrics.fundamental_inliers(pts0, pts1)
    assert 80 <= count <= 85 and ratio == count / 100
    assert metrics.fundamental_inliers(pts0[:7], pts1[:7]) == (0, 0.0)


def test_track_follows_a_real_shift_of_a_textured_frame():
    rng = np.random.default_rng(0)
    frame0 = cv2.GaussianBlur(rng.integers(0, 256, (120, 160)).astype(np.float32), (0, 0), 2.0)
    frame0 = cv2.normalize(frame0, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    shifted = np.float64([[1, 0, 2.4], [0, 1, -1.3]])
    frame1 = cv2.warpAffine(frame0, shifted, (160, 120), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    points = np.stack(np.meshgrid(np.arange(30, 131, 10), np.arange(30, 91, 10)), -1).reshape(-1, 2).astype(np.float32)
    truth, trusted = metrics.track(frame0, frame1, points)
    assert trusted.mean() > 0.9
    np.testing.assert_allclose(truth[trusted], points[trusted] + [2.4, -1.3], atol=0.1)
    empty, none = metrics.track(frame0, frame1, np.zeros((0, 2), np.float32))
    assert empty.shape == (0, 2) and none.shape == (0,)


def test_max_correct_matches_is_a_maximum_matching_not_a_greedy_one():
    # a0 is nearest to b0, which a1 also needs: greedy nearest-first pairs a0-b0 and leaves a1 alone;
    # the maximum pairs a0-b1 and a1-b0. a2 sits exactly on b2 (distance 0 is an edge); a3 is not trusted.
    truth = np.float32([[0.5, 0], [2, 0], [50, 50], [-2, 0]])
    kp1 = np.float32([[1, 0], [-2, 0], [50, 50]])
    trusted = np.array([True, True, True, False])
    assert metrics.max_correct_matches(truth, trusted, kp1) == 3
    assert metrics.max_correct_matches(truth, trusted, kp1, px=0.6) == 2  # a0-b0 and a2-b2 only
    assert metrics.max_correct_matches(truth, np.zeros(4, bool), kp1) == 0
    matches = np.array([[0, 0], [1, 0], [3, 1], [2, 1]])
    assert metrics.correct_matches(truth, trusted, kp1, matches) == 2  # a3-b1 is exact but untrusted
    assert metrics.correct_matches(truth, trusted, kp1, np.zeros((0, 2), np.int64)) == 0
