"""`bag replay` into a live ROS graph (real rclpy): a plain subscriber sees every message with its stamp, and
the extractor node fed by replay publishes what offline processing of the same bag writes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from conftest import REFERENCE

from alike_ros.model.weights import bundled_weights_path

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed")
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from rclpy.serialization import deserialize_message  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import Image, PointCloud2  # noqa: E402

from alike_ros.bag.cli import main as bag_cli  # noqa: E402
from alike_ros.bag.process import process_bag  # noqa: E402
from alike_ros.bag.replay import replay  # noqa: E402
from alike_ros.bag.report import analyse  # noqa: E402
from alike_ros.bag.sample import SampleConfig, make_sample  # noqa: E402
from alike_ros.bag.storage import open_bag  # noqa: E402
from alike_ros.parameter_table import Settings  # noqa: E402
from alike_ros.ros.messages import decode_features, decode_matches  # noqa: E402

pytestmark = pytest.mark.ros
DOMAIN = 120 + os.getpid() % 100  # apart from test_node's domains, so parallel runs do not cross-talk
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def ros_env(monkeypatch) -> dict[str, str]:
    monkeypatch.setenv("ROS_DOMAIN_ID", str(DOMAIN))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    rclpy.init()
    yield dict(os.environ)
    rclpy.try_shutdown()


def weights_path() -> str:
    for path in (bundled_weights_path("alike-t"), REFERENCE / "weights" / "alike-t.pth"):
        if path.is_file():
            return str(path)
    pytest.skip("no alike-t weights: neither bundled nor the shared upstream checkpoint")


def stamp_ns(time_msg) -> int:
    return time_msg.sec * 10**9 + time_msg.nanosec


def test_replay_into_a_plain_subscriber(tmp_path: Path, ros_env: dict[str, str]):
    """The CLI in another process; every image arrives, in order, with its stamp; /clock reaches bag time."""
    bag = make_sample(tmp_path / "s", SampleConfig(frames=8, width=64, height=48, rate=20.0))
    with open_bag(bag) as reader:
        expected = [t for c, t, _ in reader.messages() if c.topic == "/camera/image_raw"]
    node = rclpy.create_node("bag_test_listener")
    stamps, clock = [], []
    reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    node.create_subscription(Image, "/cam/image", lambda m: stamps.append(stamp_ns(m.header.stamp)), reliable)
    node.create_subscription(Clock, "/clock", lambda m: clock.append(stamp_ns(m.clock)), reliable)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    argv = [sys.executable, "-m", "alike_ros", "bag", "replay", str(bag), "--rate", "2", "--clock"]
    argv += ["--topic-map", "/camera/image_raw:/cam/image", "--wait-for-subscribers", "60"]
    player = subprocess.Popen(argv, cwd=ROOT, env=ros_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300  # only a guard against a hung player, no timing is asserted
        while player.poll() is None and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        drain = time.monotonic() + 5  # messages still in flight when the player exits
        while len(stamps) < len(expected) and time.monotonic() < drain:
            executor.spin_once(timeout_sec=0.05)
        output = player.communicate(timeout=10)[0]
    finally:
        if player.poll() is None:
            player.kill()
        node.destroy_node()
    assert player.returncode == 0, output
    assert "published 16 messages on 2 topics" in output
    assert stamps == expected
    assert clock == sorted(clock) and clock[-1] >= expected[-1]


@contextmanager
def node_process(argv: list[str], env: dict[str, str]) -> Iterator[list[str]]:
    """The node started as its own process for the block; yields its output lines, complete once the block has left
    (the node stopped, killed if it does not stop within 20 s)."""
    node = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log: list[str] = []
    reader = threading.Thread(target=lambda: log.extend(node.stdout), daemon=True)
    reader.start()
    try:
        yield log
    finally:
        node.terminate()
        try:
            node.wait(timeout=20)
        except subprocess.TimeoutExpired:
            node.kill()
        reader.join(timeout=5)  # let the log reader drain


def test_live_node_matches_offline_processing(tmp_path: Path, ros_env: dict[str, str]):
    """Replay through the node (use_sim_time, lockstep so it drops nothing), record its outputs, and compare
    them frame by frame with `bag process` on the same bag and the same parameters."""
    weights = weights_path()
    params = {"weights": weights, "device": "cpu", "warmup_frames": 0}
    bag = make_sample(tmp_path / "s", SampleConfig(frames=5, width=256, height=192))
    process_bag(bag, tmp_path / "offline", Settings.from_params(params), progress=False)

    argv = [sys.executable, "-m", "alike_ros", "node", "--ros-args", "-r", "__ns:=/camera", "-r", "image:=image_raw"]
    argv += ["-p", "use_sim_time:=true"] + [a for k, v in params.items() for a in ("-p", f"{k}:={v}")]
    outputs = {"/camera/features": "sensor_msgs/msg/PointCloud2", "/camera/matches": "sensor_msgs/msg/PointCloud2"}
    with node_process(argv, ros_env) as log:
        stats = replay(
            bag,
            rate=5.0,
            clock=True,
            wait_for_subscribers=90.0,
            record=tmp_path / "live",
            record_topics=outputs,
            lockstep=["/camera/features"],
            lockstep_timeout=60.0,
        )
    assert stats.lockstep_timeouts == 0, "".join(log)
    assert stats.recorded["/camera/features"] == 5, "".join(log)

    assert_same_outputs(
        outputs_by_stamp(tmp_path / "live", "/camera"), outputs_by_stamp(tmp_path / "offline", "/camera")
    )


def outputs_by_stamp(path: Path, namespace: str) -> dict[str, dict[int, PointCloud2]]:
    """The `features` and `matches` messages of the camera at `namespace` in a bag, by header stamp."""
    out: dict[str, dict[int, PointCloud2]] = {"features": {}, "matches": {}}
    with open_bag(path) as reader:
        for conn, _, raw in reader.messages():
            name = conn.topic.removeprefix(f"{namespace}/")
            if name in out:
                msg = deserialize_message(raw, PointCloud2)
                out[name][stamp_ns(msg.header.stamp)] = msg
    return out


def assert_same_outputs(live: dict[str, dict[int, PointCloud2]], offline: dict[str, dict[int, PointCloud2]]) -> None:
    """The node's outputs are `bag process`'s, frame by frame (`outputs_by_stamp` of each)."""
    for topic, frames in offline.items():
        assert frames and live[topic].keys() == frames.keys(), f"{topic}: stamps differ"
        for stamp, msg in frames.items():
            other = live[topic][stamp]
            assert other.header == msg.header
            if topic == "features":
                a, b = decode_features(msg), decode_features(other)
                np.testing.assert_allclose(b.keypoints, a.keypoints, atol=1e-3)
                np.testing.assert_allclose(b.descriptors, a.descriptors, atol=1e-4)
                np.testing.assert_array_equal(b.track_ids, a.track_ids)
            else:
                a, b = decode_matches(msg), decode_matches(other)
                for name in ("index0", "index1", "track_id", "stamp0_sec", "stamp0_nanosec"):
                    np.testing.assert_array_equal(b[name], a[name])


# Drivers' encodings end to end: 8- and 16-bit Bayer, YUV 4:2:2 and 4:2:0 (every encoding: test_conversions, test_bag)
DRIVER_ENCODINGS = ("bayer_rggb8", "bayer_gbrg16", "yuv422", "nv21")


def test_driver_encodings_through_bag_process_and_the_node(tmp_path: Path, ros_env: dict[str, str]):
    """A sample in each of DRIVER_ENCODINGS (`bag make-sample --encoding`) goes through `bag process`, and through
    the node in a process of its own with a camera per encoding, fed by replay from this one: for each, `bag process`
    finds the ground truth's motion (keypoints in pixels of the frame as received) and the node publishes what it
    wrote. (`bag process` runs here, while the node starts: four processes of its own cost 15 s more.)"""
    weights = weights_path()
    for encoding in DRIVER_ENCODINGS:
        args = ["make-sample", str(tmp_path / encoding), "--frames", "4", "--width", "256", "--height", "192"]
        assert bag_cli([*args, "--encoding", encoding]) == 0
    # one params file for both, so that they extract and track alike (warm-up frames would take track ids)
    params = tmp_path / "params.yaml"
    params.write_text(f"/**:\n  ros__parameters:\n    weights: {weights}\n    device: cpu\n    warmup_frames: 0\n")
    cameras = f"cameras:={','.join(DRIVER_ENCODINGS)}"
    argv = [sys.executable, "-m", "alike_ros", "node", "--ros-args", "--params-file", str(params), "-p", cameras]
    argv += ["-r", "__ns:=/enc"]
    with node_process(argv, ros_env) as log:
        for encoding in DRIVER_ENCODINGS:  # while the node starts
            out = str(tmp_path / f"{encoding}_out")
            assert bag_cli(["process", str(tmp_path / encoding), out, "--params", str(params), "--quiet"]) == 0
        for encoding in DRIVER_ENCODINGS:
            stats = replay(
                tmp_path / encoding,
                rate=5.0,
                topic_map={"/camera/image_raw": f"/enc/{encoding}/image"},
                topics=["/camera/image_raw"],
                wait_for_subscribers=90.0,
                record=tmp_path / f"{encoding}_live",
                lockstep=[f"/enc/{encoding}/features", f"/enc/{encoding}/matches"],  # recorded, none dropped
                lockstep_timeout=60.0,
                record_grace=0.5,  # lockstep: every frame's outputs are in
            )
            assert stats.lockstep_timeouts == 0 and stats.recorded[f"/enc/{encoding}/features"] == 4, "".join(log)
    for encoding in DRIVER_ENCODINGS:
        summary = analyse(tmp_path / f"{encoding}_out")["/camera"].summary(3.0)
        assert summary["frames"] == 4 and summary["accuracy_3px"] > 0.85, (encoding, summary)
        live = outputs_by_stamp(tmp_path / f"{encoding}_live", f"/enc/{encoding}")
        assert_same_outputs(live, outputs_by_stamp(tmp_path / f"{encoding}_out", "/camera"))
