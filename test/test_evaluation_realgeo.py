"""The real-geometry benchmark: pose metrics on cases with known answers, the loaders on the shared sets, and a
small end-to-end run with SIFT (the tests on real files skip where ../shared is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED, require

from alike_ros.evaluation import metrics, realgeo
from alike_ros.evaluation.cli import main
from alike_ros.extractor import to_original_pixels

REALGEO = SHARED / "data" / "realgeo"


def rotation(axis, degrees: float) -> np.ndarray:
    axis = np.asarray(axis, np.float64)
    return cv2.Rodrigues(axis / np.linalg.norm(axis) * np.deg2rad(degrees))[0]


def test_pose_auc_integrates_the_cumulative_error_curve():
    np.testing.assert_allclose(metrics.pose_auc([0.0, 0.0]), [1.0, 1.0, 1.0])
    # One pair at 4 degrees, one failed: the recall rises from (0, 0) to (4, 0.5), then stays at 0.5.
    # Areas: 1 + 0.5 up to 5; + 2.5 up to 10; + 5 up to 20.
    np.testing.assert_allclose(metrics.pose_auc([np.inf, 4.0]), [1.5 / 5, 4 / 10, 9 / 20])
    np.testing.assert_allclose(metrics.pose_auc([np.inf, 30.0]), [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(metrics.pose_auc([]), [0.0, 0.0, 0.0])


def test_pose_error_is_the_larger_of_the_rotation_and_translation_angles():
    r, t = rotation([0.2, 1, 0.1], 20), np.array([1.0, 0.2, -0.3])
    assert metrics.pose_error(r, t, r, 3 * t) == pytest.approx(0.0, abs=1e-5)  # t is known up to scale
    assert metrics.pose_error(r, t, r, -t) == pytest.approx(0.0, abs=1e-5)  # and sign (an essential matrix's)
    assert metrics.pose_error(r, t, rotation([1, -1, 2], 3) @ r, t) == pytest.approx(3.0)
    turned = rotation(np.cross(t, [0, 0, 1]), 7) @ t
    assert metrics.pose_error(r, t, rotation([0, 0, 1], 2) @ r, turned) == pytest.approx(7.0)


def test_relative_pose_of_cameras_given_by_rotation_and_centre():
    r0, c0 = rotation([1, 2, 3], 40), np.array([1.0, -2.0, 0.5])
    r1, c1 = rotation([-1, 0, 2], 25), np.array([3.0, 0.0, -1.0])
    x = np.random.default_rng(0).normal(size=(10, 3))
    r, t = metrics.relative_pose(r0, c0, r1, c1)
    in0, in1 = (x - c0) @ r0, (x - c1) @ r1  # R_i^T (X - C_i), row-wise
    np.testing.assert_allclose(in0 @ r.T + t, in1, atol=1e-12)


def test_essential_matrix_recovers_a_synthetic_two_view_pose():
    rng = np.random.default_rng(1)
    k = np.array([[500.0, 0, 320], [0, 510.0, 240], [0, 0, 1]])
    r, t = rotation([0.1, 1, 0], 12), np.array([-1.0, 0.1, 0.2])
    x0 = np.c_[rng.uniform(-2, 2, (200, 2)), rng.uniform(4, 8, 200)]  # in front of both cameras
    x1 = x0 @ r.T + t
    pts0, pts1 = ((x @ k.T)[:, :2] / x[:, 2:] for x in (x0, x1))
    pts1 = pts1 + rng.normal(0, 0.3, pts1.shape)
    pts1[:40] = rng.uniform(0, 640, (40, 2))  # 20 % outliers
    r_est, t_est, inliers = metrics.estimate_relative_pose(pts0, pts1, k, k)
    assert metrics.pose_error(r, t, r_est, t_est) < 1.0
    assert 150 <= inliers <= 165
    assert metrics.estimate_relative_pose(pts0[:4], pts1[:4], k, k) is None


def test_corner_error_of_one_moved_corner():
    size = (120, 160)
    corners = np.float32([[0, 0], [159, 0], [0, 119], [159, 119]])
    moved = corners + np.float32([[0, 0], [0, 0], [0, 0], [3, 4]])
    h = cv2.getPerspectiveTransform(corners, moved).astype(np.float64)
    assert metrics.corner_error(np.eye(3), h, size) == pytest.approx(5 / 4)


def test_scaling_is_the_inverse_of_the_extractors_pixel_mapping():
    s = realgeo.scaling((683, 1024), (427, 640))
    points = np.array([[0.0, 0.0], [639.0, 426.0], [100.25, 37.5]])
    back = to_original_pixels(points, (683, 1024), (427, 640))
    np.testing.assert_allclose(np.c_[back, np.ones(3)] @ s.T, np.c_[points, np.ones(3)], atol=1e-4)


def test_absent_folders_are_skipped_with_the_reason(tmp_path):
    sets = realgeo.load(None, 0, "pass --realgeo")
    assert not sets.homographies and not sets.poses
    assert sets.skipped == ["realgeo: no folder given (pass --realgeo)"]
    sets = realgeo.load(tmp_path, 0, "pass --realgeo")
    assert [s.split(":")[0] for s in sets.skipped] == [
        "realgeo hpatches",
        "realgeo evd",
        "realgeo strecha",
        "realgeo tum_fr3_long_office",
    ]


def ncc_after_warp(pair) -> float:
    """Normalised cross-correlation of image 1 and image 0 warped by the pair's homography, where both exist."""
    height, width = pair.image1.shape[:2]
    grey = [cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) for image in (pair.image0, pair.image1)]
    blur = [cv2.GaussianBlur(g, (0, 0), 2).astype(np.float32) for g in grey]
    warped = cv2.warpPerspective(blur[0], pair.homography, (width, height))
    seen = cv2.warpPerspective(np.ones_like(blur[0]), pair.homography, (width, height)) > 0.99
    a, b = warped[seen], blur[1][seen]
    return float(np.mean((a - a.mean()) * (b - b.mean())) / (a.std() * b.std()))


def test_homography_sets_load_rescaled_and_their_homographies_hold():
    require(REALGEO / "hpatches")
    groups = realgeo.hpatches(REALGEO, 320)
    assert [len(pairs) for _, pairs in groups] == [5, 5, 5]
    assert all(max(p.image1.shape[:2]) == 320 for _, pairs in groups for p in pairs)
    # at 320 px the rescaled homographies still line image 1 up with image k
    assert min(ncc_after_warp(p) for _, pairs in groups for p in pairs) > 0.6
    (reference, (pair,)) = realgeo.homography_group(require(REALGEO / "evd" / "adam"), 320)
    assert pair.name == "adam/1-2" and ncc_after_warp(pair) > 0.6


def test_pose_pairs_are_neighbours_that_share_a_view():
    require(REALGEO / "strecha")
    scenes = sorted((REALGEO / "strecha").iterdir())
    cameras = {s.name: [realgeo.strecha_camera(p) for p in sorted(s.glob("*.camera"))] for s in scenes}
    pairs = {name: realgeo.neighbour_pairs([r for _, r, _ in v]) for name, v in cameras.items()}
    assert [len(v) for v in cameras.values()] == [25, 8, 19, 30, 10, 11]
    # neighbours i+1 and i+2, less Herz-Jesus-P25's three pairs across the church (no shared view)
    assert sum(map(len, pairs.values())) == 2 * 103 - 3 * 6 - 3
    assert {(12, 14), (13, 14), (13, 15)}.isdisjoint(pairs["Herz-Jesus-P25"]) and (11, 13) in pairs["Herz-Jesus-P25"]


def test_pose_sets_load_cameras_that_agree_with_the_images(tmp_path):
    fountain = require(REALGEO / "strecha" / "fountain-P11")
    link(fountain, tmp_path / "strecha" / "fountain-P11", [f"000{i}.jpg{s}" for i in range(2) for s in ("", ".camera")])
    (scene,) = realgeo.strecha(tmp_path, 512)
    assert scene.views[0].image.shape == (342, 512, 3) and scene.pairs == [(0, 1)]  # 683 * 0.5 rounds to 342
    expected = [0.5 * (506.563333 + 0.5) - 0.5, 342 / 683 * (335.27 + 0.5) - 0.5]
    np.testing.assert_allclose(scene.views[0].camera[:2, 2], expected, atol=1e-6)
    # SIFT matches give the relative pose of the cameras (which fails if R, C or K are read the wrong way)
    assert estimated_error(scene, 0, 1) < 2.0

    require(REALGEO / "tum_fr3_long_office")
    (tum,) = realgeo.tum(REALGEO, 0)
    assert len(tum.views) == 17 and len(tum.pairs) == 16 + 15
    assert estimated_error(tum, 3, 4) < 3.0


def estimated_error(scene: realgeo.PoseScene, i: int, j: int) -> float:
    sift = cv2.SIFT_create(2000)
    grey = [cv2.cvtColor(scene.views[k].image, cv2.COLOR_RGB2GRAY) for k in (i, j)]
    (kp0, d0), (kp1, d1) = (sift.detectAndCompute(g, None) for g in grey)
    found = cv2.BFMatcher(cv2.NORM_L2, crossCheck=True).match(d0, d1)
    pts0 = np.float64([kp0[m.queryIdx].pt for m in found])
    pts1 = np.float64([kp1[m.trainIdx].pt for m in found])
    r, t, _ = metrics.estimate_relative_pose(pts0, pts1, scene.views[i].camera, scene.views[j].camera)
    return metrics.pose_error(*scene.truth(i, j), r, t)


def link(source: Path, target: Path, names: list[str]) -> None:
    target.mkdir(parents=True)
    for name in names:
        (target / name).symlink_to(source / name)


def test_the_benchmark_end_to_end_with_sift_on_a_few_pairs(tmp_path, capsys):
    root = require(REALGEO)
    data = tmp_path / "realgeo"
    link(root / "hpatches" / "v_dogman", data / "hpatches" / "v_dogman", ["1.png", "2.png", "H_1_2"])
    link(root / "evd" / "adam", data / "evd" / "adam", ["1.png", "2.png", "H_1_2"])
    views = [f"000{i}.jpg{suffix}" for i in range(3) for suffix in ("", ".camera")]
    link(root / "strecha" / "fountain-P11", data / "strecha" / "fountain-P11", views)
    tum = root / "tum_fr3_long_office"
    frames = sorted(p.name for p in (tum / "rgb").iterdir())[:3]
    link(tum / "rgb", data / "tum_fr3_long_office" / "rgb", frames)
    (data / "tum_fr3_long_office" / "groundtruth.txt").symlink_to(tum / "groundtruth.txt")
    out = tmp_path / "out"
    argv = ["--benchmarks", "realgeo", "--methods", "sift", "--realgeo", str(data), "--realgeo-max-side", "512"]
    assert main([*argv, "--out", str(out)]) == 0
    text = (out / "results.md").read_text()
    assert "HPatches viewpoint sequences v_churchill, v_dogman, v_wormhole (1 pairs, longer side 512 px)" in text
    assert "| MMA@10 |" in text and "| AUC@10° |" in text and "Skipped" not in text
    results = json.loads((out / "results.json").read_text())
    strecha, hpatches = results["realgeo-pose-strecha"]["rows"]["SIFT"], results["realgeo-hpatches"]["rows"]["SIFT"]
    assert strecha["pairs"] == 3 and strecha["failed"] == 0 and strecha["auc"][2] > 0.5  # 0-1, 1-2 and 0-2
    assert results["realgeo-pose-tum_fr3_long_office"]["rows"]["SIFT"]["pairs"] == 3
    assert len(hpatches["mma"]) == 10 and hpatches["mma"][2] > 0.5 and hpatches["mha"][2] == 1.0
    assert (out / "realgeo_mma.png").is_file() and not (out / "mma.png").exists()
    capsys.readouterr()
