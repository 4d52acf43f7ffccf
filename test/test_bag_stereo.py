"""Stereo in the bag tools: the synthetic rig of `make-sample --stereo`, `process --stereo`, stereo accuracy in
`report`, bad pairs."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Float64MultiArray
from test_bag import by_topic, settings, weights  # noqa: F401 (weights: a fixture)

from alike_ros.bag.cli import main as bag_cli
from alike_ros.bag.process import namespace_pairs, process_bag
from alike_ros.bag.sample import STEREO_NAMESPACES, SampleConfig, make_sample
from alike_ros.bag.stereo_report import analyse_stereo
from alike_ros.bag.storage import BagError, read_custom_data
from alike_ros.geometry import warp_points
from alike_ros.ros.conversions import image_to_array
from alike_ros.ros.messages import decode_features, decode_stereo_matches
from alike_ros.ros.stereo import StereoGeometry

LEFT, RIGHT = STEREO_NAMESPACES
CONFIG = SampleConfig(frames=3, width=240, height=180, stereo=True, stereo_near=6.0, stereo_far=14.0)


@pytest.fixture(scope="module")
def stereo_bags(tmp_path_factory, weights: str) -> tuple[Path, Path, dict]:  # noqa: F811
    root = tmp_path_factory.mktemp("stereo")
    make_sample(root / "in", CONFIG)
    summary = process_bag(root / "in", root / "out", settings(weights), progress=False, stereo=[f"{LEFT}:{RIGHT}"])
    return root / "in", root / "out", summary


def test_stereo_sample_is_a_rectified_rig_with_known_disparity(tmp_path: Path):
    make_sample(tmp_path / "s", CONFIG)
    topics = by_topic(tmp_path / "s")
    assert {f"{ns}/{t}" for ns in STEREO_NAMESPACES for t in ("image_raw", "homography", "camera_info")} == set(topics)
    infos = [deserialize_message(topics[f"{ns}/camera_info"][0][1], CameraInfo) for ns in STEREO_NAMESPACES]
    geometry = StereoGeometry.from_camera_infos(*infos)
    assert geometry.rectified and geometry.fx == CONFIG.width and geometry.baseline == pytest.approx(0.1)
    scene = CONFIG.stereo_scene()
    for k in range(CONFIG.frames):
        H = [
            np.reshape(deserialize_message(topics[f"{ns}/homography"][k][1], Float64MultiArray).data, (3, 3))
            for ns in STEREO_NAMESPACES
        ]
        left = np.array([[0.0, 10.0], [CONFIG.width - 1.0, 100.0], [120.0, 50.0]])
        right = warp_points(H[1] @ np.linalg.inv(H[0]), left)
        np.testing.assert_allclose(left[:, 0] - right[:, 0], scene.disparity(left[:, 0]), atol=1e-9)
        np.testing.assert_allclose(right[:, 1], left[:, 1], atol=1e-9)  # rectified: same rows
    # the pixels agree with the geometry: the right image, moved back by the disparity, is the left image
    images = [
        image_to_array(deserialize_message(topics[f"{ns}/image_raw"][0][1], Image))[0] for ns in STEREO_NAMESPACES
    ]
    ys, xs = np.mgrid[0 : CONFIG.height, 0 : CONFIG.width].astype(np.float32)
    back = cv2.remap(images[1], xs - scene.disparity(xs).astype(np.float32), ys, cv2.INTER_LINEAR)
    inner = np.s_[5:-5, int(CONFIG.stereo_far) + 5 : -5]
    assert np.abs(back[inner].astype(int) - images[0][inner].astype(int)).mean() < 3.0


def test_process_matches_the_pair_and_report_judges_them(stereo_bags, capsys):
    inp, out, summary = stereo_bags
    pair = summary["stereo"][LEFT]
    assert pair["right"] == RIGHT and pair["pairs"] == CONFIG.frames
    assert pair["unpaired"] == {LEFT: 0, RIGHT: 0} and pair["geometry"].startswith("rectified")
    topics = by_topic(out)
    assert f"{RIGHT}/stereo_matches" not in topics
    stereo = [deserialize_message(raw, PointCloud2) for _, raw in topics[f"{LEFT}/stereo_matches"]]
    assert len(stereo) == CONFIG.frames
    features = {
        ns: [decode_features(deserialize_message(raw, PointCloud2)) for _, raw in topics[f"{ns}/features"]]
        for ns in STEREO_NAMESPACES
    }
    scene = CONFIG.stereo_scene()
    for k, msg in enumerate(stereo):
        rows = decode_stereo_matches(msg)
        assert len(rows) > 100
        # indices point into the two cameras' features of the same instant
        np.testing.assert_array_equal(features[LEFT][k].keypoints[rows["index0"], 0], rows["x0"])
        np.testing.assert_array_equal(features[RIGHT][k].keypoints[rows["index1"], 1], rows["y1"])
        np.testing.assert_allclose(rows["depth"], scene.fx * scene.baseline / rows["disparity"], rtol=1e-5)
    reports = analyse_stereo(out, inp)
    judged = reports[LEFT].summary()
    assert judged["ground_truth_pairs"] == CONFIG.frames
    assert judged["within_1px"] > 0.9 and judged["median_disparity_error_px"] < 0.3
    assert bag_cli(["report", str(out), "--json", str(out.parent / "report.json")]) == 0
    assert "vs ground-truth disparity" in capsys.readouterr().out
    assert json.loads((out.parent / "report.json").read_text())["stereo"][LEFT]["pairs"] == CONFIG.frames
    assert read_custom_data(out)["alike_ros.process"]["stereo"][LEFT]["pairs"] == CONFIG.frames


def test_report_judges_a_wrong_disparity_wrong(stereo_bags):
    """The check can fail: the same matches against a rig with another disparity are all wrong."""
    inp, out, _ = stereo_bags
    other = SampleConfig(**{**CONFIG.__dict__, "stereo_near": 20.0, "stereo_far": 20.0})
    make_sample(out.parent / "other_truth", other)
    judged = analyse_stereo(out, out.parent / "other_truth")[LEFT].summary()
    assert judged["within_3px"] < 0.05


@pytest.mark.parametrize(
    ("pairs", "reason"),
    [
        (["/stereo/left"], "not LEFT:RIGHT"),
        (["/stereo/left:/stereo/left"], "not LEFT:RIGHT"),
        (["/stereo/left:/stereo/middle"], "/stereo/middle not among the cameras"),
        (["stereo/left:stereo/right", "/stereo/right:/x"], "in more than one pair"),
    ],
)
def test_bad_pairs_are_named(pairs: list[str], reason: str):
    namespaces = [LEFT, RIGHT, "/x"]
    with pytest.raises(BagError, match=reason):
        namespace_pairs(pairs, namespaces)
    assert namespace_pairs(["stereo/left : stereo/right"], namespaces) == [(LEFT, RIGHT)]


def test_bad_pair_on_the_command_line_is_a_clear_error(stereo_bags, tmp_path: Path, capsys):
    inp, _, _ = stereo_bags
    assert bag_cli(["process", str(inp), str(tmp_path / "o"), "--stereo", "/stereo/left:/nope", "--quiet"]) == 1
    assert "/nope not among the cameras" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
