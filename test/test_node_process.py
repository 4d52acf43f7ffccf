"""The node as users start it without ros2: `python -m alike_ros node --ros-args ...` in its own process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="the node tests need rclpy")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image, PointCloud2  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from alike_ros.model.weights import bundled_weights_path  # noqa: E402
from alike_ros.ros.conversions import array_to_image  # noqa: E402
from alike_ros.ros.messages import decode_features  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOMAIN = 55 + os.getpid() % 35  # 55..89: not the in-process tests' domain, so the two never hear each other
WAIT = 120.0  # a failure guard on a loaded machine, never a measurement


def weights() -> Path:
    bundled = bundled_weights_path("alike-t")
    if bundled.is_file():
        return bundled
    upstream = ROOT.parent / "shared" / "reference" / "weights" / "alike-t.pth"
    if not upstream.is_file():
        pytest.skip(f"no alike-t weights: neither bundled nor at {upstream}")
    return upstream


def start_node(*ros_args: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "alike_ros", "node", "--ros-args", "--params-file", "config/extractor.yaml"]
    env = {**os.environ, "ROS_DOMAIN_ID": str(DOMAIN), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [*command, *ros_args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@pytest.fixture(scope="module")
def probe_node() -> Iterator[Node]:
    context = Context()
    rclpy.init(context=context, domain_id=DOMAIN)
    node = Node("process_probe", context=context, namespace="/proc_test")
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    yield node
    executor.shutdown()
    node.destroy_node()
    context.try_shutdown()


def wait(predicate, timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_node_in_its_own_process(probe_node, textured_image):
    process = start_node(
        "-p",
        f"weights:={weights()}",
        "-p",
        "warmup_frames:=1",
        "-p",
        "diagnostics.period:=0.5",
        "-r",
        "__ns:=/proc_test",
        "-r",
        "image:=camera/image_raw",
    )
    try:
        features: list[PointCloud2] = []
        statuses = []
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        probe_node.create_subscription(PointCloud2, "features", features.append, reliable)
        probe_node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: statuses.extend(m.status), 10)
        publisher = probe_node.create_publisher(Image, "camera/image_raw", reliable)
        assert wait(lambda: publisher.get_subscription_count() > 0 or process.poll() is not None)
        assert process.poll() is None, process.stdout.read()
        # The node's input is best effort (the default): on a loaded machine a frame may be lost on the way, so
        # keep sending new frames until three came back, each with the header of the image it came from.
        sent: list[Header] = []
        deadline = time.monotonic() + WAIT
        while len(features) < 3 and time.monotonic() < deadline:
            sent.append(Header(frame_id="cam", stamp=probe_node.get_clock().now().to_msg()))
            publisher.publish(array_to_image(np.roll(textured_image, 2 * len(sent), axis=1), "mono8", sent[-1]))
            count = len(features)
            wait(lambda count=count: len(features) > count, timeout=5.0)  # pacing only; no assertion on time
        assert len(features) >= 3, "no features from the process"
        assert all(f.header in sent for f in features)
        assert len(decode_features(features[-1]).keypoints) > 0
        assert wait(lambda: any(s.name == "/proc_test/extractor: alike extractor" for s in statuses))
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=WAIT)[0]
    assert process.returncode == 0, output


def test_bad_parameter_stops_the_start_with_the_reason():
    process = start_node("-p", "detector.window_size:=4", "-r", "__ns:=/proc_bad")
    output = process.communicate(timeout=WAIT)[0]
    assert process.returncode == 1
    assert "detector.window_size" in output and "cannot start" in output
