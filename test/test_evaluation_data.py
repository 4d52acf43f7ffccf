"""Synthetic pair generator, methods and report plumbing of the evaluation (fast: tiny images)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from alike_ros import geometry
from alike_ros.evaluation import benchmarks, report, synthetic
from alike_ros.evaluation.cli import main
from alike_ros.evaluation.methods import OrbMethod, SiftMethod, Unavailable, build_methods


@pytest.fixture
def photo(textured_image) -> np.ndarray:
    return np.repeat(textured_image[..., None], 3, axis=2)


@pytest.mark.parametrize("kind", ["v", "i"])
def test_a_point_lands_where_h_says(photo, kind):
    image = np.zeros_like(photo)
    image[100:103, 150:153] = 255  # a bright 3x3 square centred on pixel (151, 101)
    pair = synthetic.make_pair(image, "dot.png", kind, 0)
    if kind == "i":  # compare geometry only: the photometric change moves no pixel
        pair = synthetic.Pair(
            pair.name, kind, image, cv2.warpPerspective(image, pair.homography, (320, 240)), pair.homography
        )
    expected = geometry.warp_points(pair.homography, [[151.0, 101.0]])[0]
    grey = pair.image1[..., 0].astype(np.float64)
    ys, xs = np.nonzero(grey > 0)
    weights = grey[ys, xs]
    centroid = np.array([np.average(xs, weights=weights), np.average(ys, weights=weights)])
    np.testing.assert_allclose(centroid, expected, atol=0.6)


def test_pairs_are_deterministic_and_overlap(photo):
    for kind in "vi":
        a = synthetic.make_pair(photo, "x.jpg", kind, 1)
        b = synthetic.make_pair(photo, "x.jpg", kind, 1)
        np.testing.assert_array_equal(a.homography, b.homography)
        np.testing.assert_array_equal(a.image1, b.image1)
        assert synthetic.overlap(a.homography, photo.shape[:2]) >= synthetic.MIN_OVERLAP
    assert not np.allclose(synthetic.make_pair(photo, "x.jpg", "v", 0).homography, a.homography)
    assert not np.allclose(synthetic.make_pair(photo, "y.jpg", "v", 1).homography, a.homography)


def test_illumination_pairs_change_photometry_not_much_geometry(photo):
    pair = synthetic.make_pair(photo, "x.jpg", "i", 0)
    corners = np.array([[0, 0], [319, 0], [0, 239], [319, 239]], np.float64)
    assert np.abs(geometry.warp_points(pair.homography, corners) - corners).max() < 25
    assert np.abs(pair.image1.astype(int) - cv2.warpPerspective(photo, pair.homography, (320, 240))).mean() > 5


def test_synthetic_pairs_reads_a_folder(tmp_path, photo):
    cv2.imwrite(str(tmp_path / "b.png"), photo)
    cv2.imwrite(str(tmp_path / "a.png"), cv2.flip(photo, 1))
    (tmp_path / "notes.txt").write_text("not an image")
    groups = list(synthetic.synthetic_pairs(tmp_path, max_side=160, viewpoint=2, illumination=1))
    assert [p.name for p in groups[0][1]] == ["a/v0", "a/v1", "a/i0"]
    assert groups[0][0].shape == (120, 160, 3) and len(groups) == 2


@pytest.mark.parametrize("method", [SiftMethod(), OrbMethod()], ids=["sift", "orb"])
def test_opencv_methods_on_a_known_shift(photo, method):
    """A pure translation: the evaluation must find most matches correct and the homography exact."""
    h = np.array([[1, 0, 7], [0, 1, 4], [0, 0, 1]], np.float64)
    pair = synthetic.Pair("shift", "v", photo, cv2.warpAffine(photo, h[:2], (320, 240)), h)
    timer = benchmarks.Timer()
    result = benchmarks.evaluate_homography_benchmark(method, [(photo, [pair])], timer)[0]
    assert result.matches > 10 and result.mma[2] > 0.8 and result.corner_error < 1.0
    assert timer.count == 2


def test_unavailable_methods_become_rows(tmp_path):
    methods = build_methods(["ours", "upstream-alike-t", "sift"], "alike-t", str(tmp_path / "none.pth"), tmp_path)
    assert isinstance(methods[0], Unavailable) and "pending" in methods[0].reason
    assert isinstance(methods[1], Unavailable) and "skipped" in methods[1].reason
    # another model of the package by its name: its bundled weights, or a row saying they are missing
    (by_name,) = build_methods(["alike-l"], "alike-t", None, tmp_path)
    assert isinstance(by_name, Unavailable) and by_name.name == "alike-l" and "alike-l.pth" in by_name.reason
    with pytest.raises(ValueError, match="unknown method 'surf': use ours, alike-t, .*keynet"):
        build_methods(["surf"], "alike-t", None, tmp_path)


def test_cli_skips_absent_data_and_updates_the_doc(tmp_path, photo, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "p.png"), photo)
    doc = tmp_path / "EVAL.md"
    doc.write_text(f"# Eval\n\nprose\n\n{report.DOC_START}\nold\n{report.DOC_END}\n\nmore prose\n")
    argv = ["--methods", "orb", "--photos", str(photos), "--data", str(tmp_path / "none"), "--max-side", "160"]
    argv += ["--realgeo", str(tmp_path / "none"), "--viewpoint", "1", "--illumination", "1"]
    argv += ["--out", str(tmp_path / "out"), "--update-doc", str(doc)]
    assert main(argv) == 0
    text = doc.read_text()
    assert "\nold\n" not in text and "prose" in text and "more prose" in text and "| ORB | 2 |" in text
    assert "fetch_eval_data.sh" in text and "python -m alike_ros evaluate --methods orb" in text
    assert f"realgeo: {tmp_path / 'none'} is absent (pass --realgeo or set ALIKE_ROS_SHARED)" in text
    assert (tmp_path / "out" / "mma.png").is_file() and (tmp_path / "out" / "results.json").is_file()
    assert "Synthetic, all (2 pairs" in capsys.readouterr().out


def test_video_scoring_on_a_shifting_image(photo, tmp_path):
    frames = [np.roll(photo, (0, 3 * k), axis=(0, 1)) for k in range(3)]
    summary = benchmarks.evaluate_video(OrbMethod(), frames, benchmarks.Timer())
    assert summary.pairs == 2 and summary.inlier_ratio > 0.8 and summary.inliers > 20
    assert benchmarks.video_frames(Path(tmp_path)) is None


def test_alike_identity_pair_is_perfect(photo, upstream_weights):
    from alike_ros.evaluation.methods import ExtractorMethod

    method = ExtractorMethod("upstream alike-t", "alike-t", upstream_weights("alike-t"))
    pair = synthetic.Pair("same", "i", photo, photo.copy(), np.eye(3))
    result = benchmarks.evaluate_homography_benchmark(method, [(photo, [pair])], benchmarks.Timer())[0]
    assert result.matches == result.keypoints[0] > 20
    np.testing.assert_array_equal(result.mma, np.ones(5))
    assert result.repeatability == 1.0 and result.corner_error < 0.1


def test_alike_top_k_sets_an_equal_budget(photo, upstream_weights):
    directory = upstream_weights("alike-t").parent
    (method,) = build_methods(["upstream-alike-t"], "alike-t", None, directory, top_k=25)
    assert len(method.detect(photo).keypoints) == 25 and "top_k=25" in method.note


def test_shared_data_comes_from_the_environment_not_the_repository_layout(monkeypatch, tmp_path):
    from alike_ros.evaluation import cli

    monkeypatch.delenv("ALIKE_ROS_SHARED", raising=False)
    args = cli.parse_args([])
    assert args.photos is None and args.upstream_dir is None
    (upstream,) = build_methods(["upstream-alike-t"], "alike-t", None, args.upstream_dir)
    assert isinstance(upstream, Unavailable) and "ALIKE_ROS_SHARED" in upstream.reason
    monkeypatch.setenv("ALIKE_ROS_SHARED", str(tmp_path))
    args = cli.parse_args([])
    assert args.photos == tmp_path / "data" / "photos" / "eval"
    assert args.upstream_dir == tmp_path / "reference" / "weights"


def test_top_k_gives_sift_and_orb_the_same_budget(photo, tmp_path, capsys):
    sift, orb = build_methods(["sift", "orb"], "alike-t", None, tmp_path, top_k=30, handcrafted_top_k=30)
    assert "nfeatures=30" in sift.note and "nfeatures=30" in orb.note
    # OpenCV's SIFT keeps every orientation of its strongest nfeatures points, and ties: a few more than 30
    assert 30 <= len(sift.detect(photo).keypoints) <= 40 and 0 < len(orb.detect(photo).keypoints) <= 30
    (default,) = build_methods(["sift"], "alike-t", None, tmp_path, top_k=30)  # --alike-top-k: SIFT keeps 5000
    assert len(default.detect(photo).keypoints) > 60
    assert main(["--top-k", "30", "--alike-top-k", "30", "--methods", "sift"]) == 2
    assert "give one" in capsys.readouterr().err
