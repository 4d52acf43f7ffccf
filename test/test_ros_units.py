"""The node's building blocks without a running node: parameters, config file, statistics, VINS, drawing."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

pytest.importorskip("rclpy", reason="the node's modules use ROS message types")

from sensor_msgs.msg import CameraInfo  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from alike_ros import parameter_table  # noqa: E402
from alike_ros.drawing import draw_tracks, track_colours  # noqa: E402
from alike_ros.extractor import Features  # noqa: E402
from alike_ros.matching.matcher import Matches  # noqa: E402
from alike_ros.matching.tracker import TrackedFrame  # noqa: E402
from alike_ros.monitoring import (  # noqa: E402
    END_TO_END,
    STAGES,
    Level,
    SequenceGaps,
    Statistics,
    assess,
    transport_cause,
)  # noqa: E402
from alike_ros.ros import qos  # noqa: E402
from alike_ros.ros.diagnostics import stage_medians, to_status  # noqa: E402
from alike_ros.ros.mailbox import Mailboxes  # noqa: E402
from alike_ros.ros.parameter_descriptors import descriptor  # noqa: E402
from alike_ros.ros.stereo import LEFT, RIGHT, StampPairing, StereoGeometry  # noqa: E402
from alike_ros.ros.vins import LAYOUTS, CameraModel, encode_vins  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "config" / "extractor.yaml"
MS = 1_000_000  # nanoseconds


def test_config_file_holds_every_parameter_with_its_default_and_a_comment():
    values = yaml.safe_load(CONFIG.read_text())["/**"]["ros__parameters"]
    assert values == parameter_table.DEFAULTS
    lines = CONFIG.read_text().splitlines()
    for name in parameter_table.DEFAULTS:
        row = next(i for i, line in enumerate(lines) if line.strip().startswith(f"{name}:"))
        assert any(line.strip().startswith("#") for line in lines[max(0, row - 4) : row]), f"{name} has no comment"


def test_defaults_are_valid_and_descriptors_carry_ranges():
    parameter_table.validate(dict(parameter_table.DEFAULTS))
    desc = descriptor(parameter_table.BY_NAME["detector.window_size"])
    assert (desc.integer_range[0].from_value, desc.integer_range[0].to_value, desc.integer_range[0].step) == (3, 31, 2)
    assert descriptor(parameter_table.BY_NAME["detector.score_threshold"]).floating_point_range[0].to_value == 1.0
    assert "one of" in descriptor(parameter_table.BY_NAME["model"]).additional_constraints
    assert all(p.spec.help for p in parameter_table.PARAMETERS)


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("detector.window_size", 4, "multiple of 2"),
        ("detector.window_size", 1, r"\[3, 31\]"),
        ("detector.score_threshold", 1.0, r"\[0, 1\)"),
        ("detector.max_keypoints", 0, "max_keypoints"),
        ("model", "alike-q", "one of"),
        ("device", "tpu", "device"),
        ("weights", "/nonexistent/w.pth", "does not exist"),
        ("input.transport", "theora", "one of"),
        ("matching.min_similarity", 2.0, "min_similarity"),
        ("matching.search_radius", -1.0, "search_radius"),
        ("matching.min_guided_share", 1.5, "min_guided_share"),
        ("diagnostics.period", 0, "must be a float"),
        ("warmup_sizes", "640*480", "not WIDTHxHEIGHT"),
        ("warmup_sizes", "640x480,", "not WIDTHxHEIGHT"),
        ("warmup_sizes", "640x0", "outside 1..16384"),
    ],
)
def test_validate_names_the_reason(name, value, reason):
    with pytest.raises(ValueError, match=reason):
        parameter_table.validate({**parameter_table.DEFAULTS, name: value})


def test_half_precision_needs_cuda():
    # device pinned to cpu: with `auto`, a machine with CUDA would rightly accept half precision
    with pytest.raises(ValueError, match="half precision needs a CUDA device"):
        parameter_table.validate({**parameter_table.DEFAULTS, "device": "cpu", "half": True})


def test_mailboxes_keep_only_the_newest_frame_of_each_camera():
    box = Mailboxes([""])
    assert box.put("", "a") is False
    assert box.put("", "b") is True  # "a" was replaced unread
    assert box.take(0.0) == ("", "b")
    assert box.take(0.0) is None


def test_mailboxes_serve_the_cameras_in_turn():
    """A fast camera with a frame always waiting cannot starve a slow one: each frame the slow one sends is served
    within one turn, and the fast one gets the rest."""
    box = Mailboxes(["fast", "slow", "idle"])
    served = []
    for tick in range(30):
        box.put("fast", f"f{tick}")
        if tick % 3 == 0:
            box.put("slow", f"s{tick}")
        served.append(box.take(0.0)[0])
        box.done(served[-1])
    assert served.count("slow") == 10 and served.count("fast") == 20
    assert all("slow" in served[i : i + 2] for i in range(0, 30, 3))  # served at once, or at the next take
    with pytest.raises(KeyError):
        box.put("unknown", "x")


def test_a_camera_is_never_with_two_workers_at_once():
    """Two workers: while one holds a camera's frame, the camera's newer frame waits for it (frames stay in order,
    its tracker is never used by two threads), and the other worker serves another camera meanwhile."""
    box = Mailboxes(["a", "b"])
    box.put("a", "a1")
    assert box.take(0.0) == ("a", "a1")  # worker 1 holds a
    box.put("a", "a2")
    box.put("b", "b1")
    assert box.take(0.0) == ("b", "b1")  # worker 2: not a2
    assert box.take(0.0) is None  # a busy, b empty
    box.done("a")
    assert box.take(0.0) == ("a", "a2")


def test_a_batch_takes_every_waiting_camera_but_a_busy_one():
    box = Mailboxes(["a", "b", "c"])
    assert box.take_ready(0.0) == []
    box.put("a", "a1")
    assert box.take(0.0) == ("a", "a1")  # another worker holds a
    for name in ("a", "b", "c"):
        box.put(name, f"{name}2")
    assert box.take_ready(0.0) == [("b", "b2"), ("c", "c2")]  # a's frame waits for its worker
    box.done("a")
    assert box.take_ready(0.0) == [("a", "a2")]
    for name in ("b", "c"):
        box.done(name)
        box.put(name, f"{name}3")
    box.done("a")
    assert [name for name, _ in box.take_ready(0.0)] == ["b", "c"]  # in turn, after the camera served last


def test_statistics_and_levels():
    stats = Statistics(window=4, start_ns=0)
    for i in range(6):
        stats.on_received(i * 100 * MS)
        stats.on_processed(i * 100 * MS + 50 * MS, dict.fromkeys(STAGES, float(i)), 10.0 * (i + 1))
    snap = stats.snapshot(600 * MS)
    assert (snap.received, snap.processed, snap.dropped_total) == (6, 6, 0)
    assert snap.latency["network"].count == 4  # the window
    assert snap.latency["network"].max == 5.0 and snap.latency["network"].mean == 3.5
    assert snap.latency[END_TO_END].p50 == pytest.approx(45.0)
    assert snap.input_rate == pytest.approx(10.0)
    ok = assess(snap, budget_ms=100.0, stale_s=0.1, stale_timeout=3.0, publishers=1)
    assert ok.level == Level.OK

    over = assess(stats.snapshot(600 * MS), budget_ms=20.0, stale_s=0.1, stale_timeout=3.0, publishers=1)
    assert over.level == Level.WARN and "budget" in over.message

    stats.on_dropped("superseded")
    dropped = assess(stats.snapshot(600 * MS), budget_ms=100.0, stale_s=0.1, stale_timeout=3.0, publishers=1)
    assert dropped.level == Level.WARN and "1 frame(s) superseded" in dropped.message
    stats.start_period()
    assert assess(stats.snapshot(600 * MS), 100.0, 0.1, 3.0, 1).level == Level.OK

    stats.on_dropped("model_failure", "boom")
    failed = assess(stats.snapshot(600 * MS), 100.0, 0.1, 3.0, 1)
    assert failed.level == Level.ERROR and failed.last_error == "model_failure: boom"
    stats.start_period()
    stale = assess(stats.snapshot(10_000 * MS), 100.0, stats.stale_seconds(10_000 * MS), 3.0, publishers=1)
    assert stale.level == Level.ERROR and "no frames" in stale.message
    nobody = assess(stats.snapshot(10_000 * MS), 100.0, stats.stale_seconds(10_000 * MS), 3.0, publishers=0)
    assert nobody.level == Level.OK  # no publisher: silence is expected
    assert stats.snapshot(10_000 * MS).input_rate == 0.0  # nothing arrived in the last seconds

    status = to_status(failed, "/x/extractor: alike extractor", "cpu")
    keys = {kv.key for kv in status.values}
    assert {"frames.dropped.model_failure", "latency.end_to_end.p95_ms", "rate.input_hz"} <= keys
    medians = stage_medians({kv.key: kv.value for kv in status.values})  # what the status's readers take back
    assert medians["network"] == pytest.approx(failed.latency["network"].p50, abs=1e-3)
    assert medians[END_TO_END] == pytest.approx(45.0, abs=1e-3) and set(medians) == set(failed.latency)


@pytest.mark.parametrize(
    ("setting", "offered", "chosen"),
    [
        ("auto", [], "best_effort"),  # matches whatever publisher comes first
        ("auto", ["reliable"], "reliable"),
        ("auto", ["reliable", "reliable"], "reliable"),
        ("auto", ["reliable", "best_effort"], "best_effort"),  # a reliable subscription would lose the second
        ("auto", ["best_effort"], "best_effort"),
        ("reliable", ["best_effort"], "reliable"),  # explicit settings are kept
        ("best_effort", ["reliable"], "best_effort"),
    ],
)
def test_input_reliability_follows_the_publishers(setting, offered, chosen):
    assert qos.input_reliability(setting, offered) == chosen


def test_missed_and_stale_frames_name_the_cause_and_the_fix():
    stats = Statistics(window=10, start_ns=0)
    stats.on_dropped("missed", count=4)
    setting = "FASTRTPS_DEFAULT_PROFILES_FILE=/opt/share/alike_ros/config/fastdds_large_data.xml"
    cause = transport_cause("best_effort", ["best_effort"], setting)
    missed = assess(stats.snapshot(MS), 100.0, 0.1, 3.0, publishers=1, cause=cause)
    assert missed.level == Level.WARN
    assert "4 frame(s) sent but never received" in missed.message
    assert setting in missed.message and "shared-memory" in missed.message
    stats.start_period()
    stale = assess(stats.snapshot(10_000 * MS), 100.0, 10.0, 3.0, publishers=1, cause=cause)
    assert stale.level == Level.ERROR and "no frames for 10.0 s" in stale.message
    assert setting in stale.message
    assert "cannot match" in transport_cause("reliable", ["reliable", "best_effort"], setting)
    assert "set input.qos.reliability to auto or reliable" in transport_cause("best_effort", ["reliable"], setting)
    reliable = transport_cause("reliable", ["reliable"], setting)
    assert "overflowed" in reliable and setting in reliable


def test_sequence_gaps_count_what_each_publisher_sent_and_never_arrived():
    gaps = SequenceGaps()
    a, b = {"data": b"camera a"}, {"data": b"camera b"}
    # named publishers (Kilted's message info): each its own sequence, interleaved or not
    assert [gaps.missed({"publisher_gid": g, "publication_sequence_number": n}, 2) for g, n in
            ((a, 5), (b, 1), (a, 6), (b, 4), (a, 9))] == [0, 0, 0, 2, 2]  # fmt: skip
    # no publisher named (Jazzy's): one publisher's numbers are still its own
    gaps = SequenceGaps()
    assert [gaps.missed({"publication_sequence_number": n}, 1) for n in (3, 4, 7)] == [0, 0, 2]
    # ... several publishers' interleave, and a change of publishers starts the sequence afresh
    assert [gaps.missed({"publication_sequence_number": n}, 2) for n in (1, 20)] == [0, 0]
    assert [gaps.missed({"publication_sequence_number": n}, 1) for n in (50, 51, 53)] == [0, 0, 1]
    assert gaps.missed({}, 1) == 0  # a middleware that gives no numbers


def test_rates_restart_when_the_clock_goes_back():
    stats = Statistics(window=10, start_ns=0)
    for t in (1000, 1100, 1200):
        stats.on_received(t * MS)
    stats.on_received(10 * MS)  # a bag looped under use_sim_time
    assert stats.snapshot(10 * MS).input_rate == 0.0
    assert stats.snapshot(10 * MS).received == 4


def tracked_frame(keypoints: np.ndarray, previous: np.ndarray, lengths: np.ndarray) -> TrackedFrame:
    n = len(keypoints)
    feats = Features(keypoints.astype(np.float32), np.ones(n, np.float32), np.eye(n, 64, dtype=np.float32), (480, 640))
    prev = Features(
        previous.astype(np.float32),
        np.ones(len(previous), np.float32),
        np.eye(len(previous), 64, dtype=np.float32),
        (480, 640),
    )
    matches = Matches(
        np.array([[i, i] for i in range(min(n, len(previous)))], np.int64), np.ones(min(n, len(previous)), np.float32)
    )
    return TrackedFrame(feats, np.arange(n, dtype=np.uint32) + 7, lengths, matches, prev)


def camera_info(distortion: str = "plumb_bob", d: list[float] | None = None) -> CameraInfo:
    info = CameraInfo(width=640, height=480, distortion_model=distortion, d=d or [0.0] * 5)
    info.k = [500.0, 0.0, 320.0, 0.0, 400.0, 240.0, 0.0, 0.0, 1.0]
    return info


def test_camera_model_normalises_with_and_without_distortion():
    pixels = np.array([[320.0, 240.0], [820.0, 640.0]])
    np.testing.assert_allclose(CameraModel(camera_info()).normalise(pixels), [[0, 0], [1, 1]], atol=1e-9)
    d = [0.1, -0.05, 0.001, 0.002, 0.0]
    model = CameraModel(camera_info(d=d))
    points = np.array([[0.1, -0.2, 1.0], [0.3, 0.25, 1.0]])
    k = np.array(camera_info().k).reshape(3, 3)
    projected = cv2.projectPoints(points, np.zeros(3), np.zeros(3), k, np.array(d))[0].reshape(-1, 2)
    np.testing.assert_allclose(model.normalise(projected), points[:, :2], atol=1e-5)
    with pytest.raises(ValueError, match="intrinsics"):
        CameraModel(CameraInfo())
    with pytest.raises(ValueError, match="distortion model"):
        CameraModel(camera_info(distortion="double_sphere"))


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_vins_layouts(layout):
    frame = tracked_frame(np.array([[330.0, 250.0], [100.0, 50.0]]), np.array([[320.0, 240.0]]), np.array([2, 1]))
    msg = encode_vins(Header(frame_id="cam"), frame, layout, CameraModel(camera_info()), dt=0.5)
    assert [c.name for c in msg.channels] == list(LAYOUTS[layout])
    ch = {c.name: np.array(c.values) for c in msg.channels}
    np.testing.assert_array_equal(ch["id_of_point"], [7, 8])
    np.testing.assert_allclose(ch["velocity_x_of_point"], [10.0 / 500 / 0.5, 0.0])  # new tracks: zero velocity
    np.testing.assert_allclose(ch["velocity_y_of_point"], [10.0 / 400 / 0.5, 0.0])
    assert [(p.x, p.y, p.z) for p in msg.points][0] == pytest.approx((0.02, 0.025, 1.0))
    with pytest.raises(ValueError, match="camera_info is for"):
        small = camera_info()
        small.width = 320
        encode_vins(Header(), frame, layout, CameraModel(small), dt=0.5)


def test_debug_drawing_colours_by_track_length():
    colours = track_colours(np.array([1, 5, 10, 50]))
    assert not np.array_equal(colours[0], colours[2])
    np.testing.assert_array_equal(colours[2], colours[3])  # long tracks share the last colour
    frame = tracked_frame(np.array([[330.0, 250.0], [100.0, 50.0]]), np.array([[300.0, 240.0]]), np.array([12, 1]))
    canvas = draw_tracks(np.zeros((480, 640, 3), np.uint8), frame)
    assert canvas[250, 330].any() and canvas[50, 100].any() and canvas[245, 315].any()  # points and the line


def test_a_new_camera_gets_the_stale_timeout_and_old_latencies_raise_no_warning():
    stats = Statistics(window=10, start_ns=0)
    stats.on_received(0)
    stats.on_processed(10 * MS, dict.fromkeys(STAGES, 1.0), 500.0)  # one slow frame, long ago
    assert stats.stale_seconds(20_000 * MS) == pytest.approx(20.0)
    stats.on_publisher_appeared(19_000 * MS)  # a camera (re)appears after a long silence
    assert stats.stale_seconds(20_000 * MS) == pytest.approx(1.0)
    stale = assess(stats.snapshot(20_000 * MS), 100.0, stats.stale_seconds(20_000 * MS), 3.0, publishers=1)
    assert stale.level == Level.OK  # not stale yet, and a 500 ms frame 20 s ago is no news
    recent = assess(stats.snapshot(1_000 * MS), 100.0, 0.5, 3.0, publishers=1)
    assert recent.level == Level.WARN and "over the 100 ms budget" in recent.message


def test_stereo_frames_pair_by_stamp_and_the_rest_are_counted():
    pairing = StampPairing(max_skew_ns=0)
    assert pairing.add(LEFT, 100, "l100") == (None, [0, 0])
    assert pairing.add(RIGHT, 100, "r100") == (("l100", "r100", 100, 100), [0, 0])
    assert pairing.add(LEFT, 200, "l200") == (None, [0, 0])  # its right frame never comes
    assert pairing.add(RIGHT, 301, "r301") == (None, [0, 0])
    # l300 pairs with nothing (skew 0: 301 is another instant); l400 pairs with r400, giving up l200, l300, r301
    assert pairing.add(LEFT, 300, "l300") == (None, [0, 0])
    assert pairing.add(RIGHT, 400, "r400") == (None, [0, 0])
    assert pairing.add(LEFT, 400, "l400") == (("l400", "r400", 400, 400), [2, 1])
    skewed = StampPairing(max_skew_ns=5)  # an unsynchronised driver: the closest stamp within the skew
    skewed.add(RIGHT, 96, "r96")
    skewed.add(RIGHT, 103, "r103")
    assert skewed.add(LEFT, 100, "l100") == (("l100", "r103", 100, 103), [0, 1])
    bounded = StampPairing(max_skew_ns=0, keep=3)
    assert [bounded.add(LEFT, t, t)[1] for t in range(5)] == [[0, 0]] * 3 + [[1, 0]] * 2  # never grows


def stereo_info(fx: float, tx: float, rotation=(1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)) -> CameraInfo:
    return CameraInfo(
        width=640, height=480, k=[fx, 0.0, 320.0, 0.0, fx, 240.0, 0.0, 0.0, 1.0], r=list(map(float, rotation)),
        distortion_model="plumb_bob", d=[0.0] * 5,
        p=[fx, 0.0, 320.0, tx, 0.0, fx, 240.0, 0.0, 0.0, 0.0, 1.0, 0.0],
    )  # fmt: skip


def test_stereo_geometry_from_camera_info():
    assert StereoGeometry.from_camera_infos(None, None).rectified  # assumed, and said
    assert "no camera_info" in StereoGeometry.from_camera_infos(None, None).note
    rectified = StereoGeometry.from_camera_infos(stereo_info(500.0, 0.0), stereo_info(500.0, -50.0))
    assert rectified.rectified and rectified.fx == 500.0 and rectified.baseline == pytest.approx(0.1)
    tilted = stereo_info(500.0, -50.0, rotation=(0.99, -0.14, 0, 0.14, 0.99, 0, 0, 0, 1))
    unrectified = StereoGeometry.from_camera_infos(stereo_info(500.0, 0.0), tilted)
    assert not unrectified.rectified and "unrectified" in unrectified.note
    other_fx = StereoGeometry.from_camera_infos(stereo_info(500.0, 0.0), stereo_info(510.0, -51.0))
    assert not other_fx.rectified
    assert unrectified.calibration is None and "mutual nearest neighbours only" in unrectified.note
    # with the right camera's pose: the epipolar check, from each camera's own K and D
    posed = StereoGeometry.from_camera_infos(stereo_info(500.0, 0.0), stereo_info(510.0, -51.0), "0.1 0 0 0 0 0 1")
    assert posed.calibration is not None and "epipolar" in posed.note
    assert posed.calibration.K_right[0, 0] == 510.0 and np.allclose(posed.calibration.t, [-0.1, 0, 0])
    fisheye = stereo_info(510.0, -51.0)
    fisheye.distortion_model = "equidistant"
    mixed = StereoGeometry.from_camera_infos(stereo_info(500.0, 0.0), fisheye, "0.1 0 0 0 0 0 1")
    assert mixed.calibration is None and "not handled" in mixed.note
    no_k = stereo_info(510.0, -51.0)
    no_k.k = [0.0] * 9
    assert "without intrinsics" in StereoGeometry.from_camera_infos(stereo_info(500.0, 0.0), no_k, "0 0 0 0 0 0 1").note


def test_a_bad_right_pose_is_rejected_with_the_reason():
    values = {**parameter_table.DEFAULTS, "stereo.right_pose": "0.1 0 0"}
    with pytest.raises(ValueError, match="right_pose"):
        parameter_table.validate(values)
    parameter_table.validate({**values, "stereo.right_pose": "0.1 0 0 0 0 0 1"})


@pytest.mark.parametrize(
    "pairs, reason",
    [("left:left", "two different"), ("left:back", "not in cameras"), ("left:right,right:rear", "more than one"),
     ("left", "LEFT:RIGHT")],
)  # fmt: skip
def test_bad_stereo_pairs_are_rejected_with_the_reason(pairs, reason):
    values = {**parameter_table.DEFAULTS, "cameras": "left,right,rear", "stereo.pairs": pairs}
    with pytest.raises(ValueError, match=reason):
        parameter_table.validate(values)
    parameter_table.validate({**values, "stereo.pairs": "left:right"})
    with pytest.raises(ValueError, match="min_disparity"):
        parameter_table.validate({**values, "stereo.pairs": "left:right", "stereo.min_disparity": 300.0})
