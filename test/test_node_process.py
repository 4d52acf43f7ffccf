"""The node as users start it without ros2: `python -m alike_ros node --ros-args ...` in its own process, and fed
by a camera in another process (`python -m alike_ros camera`), as over a real robot's processes."""

from __future__ import annotations

import json
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
from conftest import spinning_node, wait_until

rclpy = pytest.importorskip("rclpy", reason="the node tests need rclpy")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image, PointCloud2  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from alike_ros.model.weights import bundled_weights_path  # noqa: E402
from alike_ros.ros import fastdds  # noqa: E402
from alike_ros.ros.conversions import array_to_image  # noqa: E402
from alike_ros.ros.diagnostics import frame_counters, in_flight  # noqa: E402
from alike_ros.ros.messages import decode_features, decode_stereo_matches  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# 55..89: not the in-process tests' domain, so the two never hear each other (ALIKE_ROS_TEST_DOMAIN: another one)
DOMAIN = int(os.environ.get("ALIKE_ROS_TEST_DOMAIN", 55 + os.getpid() % 35))
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
    with spinning_node("process_probe", DOMAIN, "/proc_test") as node:
        yield node


def wait(predicate, timeout: float = WAIT) -> bool:
    return wait_until(predicate, timeout)


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
        # The node's input follows the publishers (`auto`, the default) and re-subscribes once it sees this one, and
        # on a loaded machine a frame may be lost on the way: keep sending new frames until three came back, each
        # with the header of the image it came from.
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


# ---------------------------------------------------------------- camera and node in separate processes

CAMERA_NS = "/proc_cam"
CAMERA_STATUS = f"{CAMERA_NS}/extractor: alike extractor"
FRAMES, RATE = 40, 10.0  # 640x480 bgr8 frames (0.9 MB, over Fast DDS's default 0.5 MiB shared-memory segment)


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without a Fast DDS profile (the node then applies its own: the package default)."""
    env = {k: v for k, v in os.environ.items() if k not in (*fastdds.PROFILE_ENVS, fastdds.OPT_OUT_ENV)}
    return {**env, "ROS_DOMAIN_ID": str(DOMAIN), "PYTHONUNBUFFERED": "1", **extra}


class CameraRig:
    """The node in its own process with the package defaults, and what a probe in this process hears of it: a
    best-effort `features` subscription (sensor-data QoS) and the node's /diagnostics."""

    def __init__(self, probe: Node, node: subprocess.Popen, log: Path):
        self.node, self.log = node, log
        self.lock = threading.Lock()
        self.features: list[PointCloud2] = []
        self.statuses: list[tuple[float, object]] = []  # (monotonic receipt time, DiagnosticStatus)
        probe.create_subscription(PointCloud2, f"{CAMERA_NS}/features", self._on_features, qos_profile_sensor_data)
        probe.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def _on_features(self, msg: PointCloud2) -> None:
        with self.lock:
            self.features.append(msg)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        now = time.monotonic()
        with self.lock:
            self.statuses.extend((now, s) for s in msg.status if s.name == CAMERA_STATUS)

    def statuses_between(self, start: float, end: float = float("inf")) -> list:
        with self.lock:
            return [s for t, s in self.statuses if start <= t <= end]

    def settled(self, since: float) -> dict[str, int]:
        """The node's counters once two consecutive statuses received after `since` agree and every frame received
        is accounted for (the node is idle)."""
        result: dict[str, int] = {}

        def idle() -> bool:
            recent = [frame_counters(s) for s in self.statuses_between(since)]
            if len(recent) >= 2 and recent[-1] == recent[-2] and in_flight(recent[-1]) == 0:
                result.update(recent[-1])
                return True
            return self.node.poll() is not None

        assert wait(idle), "the node's /diagnostics did not settle"
        assert self.node.poll() is None, self.log.read_text()
        return result

    def run_camera(self, reliability: str, profile: bool) -> tuple[dict, dict[str, int], list, list[PointCloud2]]:
        """One camera process: its report, the node's counters over its run, the node's statuses while it ran and
        the features the probe received."""
        before = self.settled(time.monotonic() - 1.0)
        with self.lock:
            self.features.clear()
        # as the README tells users: the shipped profile under the name this distribution's Fast DDS reads
        env = clean_env(**(fastdds.profile_environment(ROOT / "config" / fastdds.PROFILE_FILE) if profile else {}))
        command = [
            sys.executable, "-m", "alike_ros", "camera", "--size", "640x480", "--rate", f"{RATE:g}",
            "--frames", str(FRAMES), "--reliability", reliability, "--wait-for-subscribers", str(WAIT),
            "--ros-args", "-r", f"__ns:={CAMERA_NS}", "-r", "image:=image_raw",
        ]  # fmt: skip
        start = time.monotonic()
        camera = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=2 * WAIT)
        end = time.monotonic()
        assert camera.returncode == 0, camera.stderr
        report = json.loads(camera.stdout.strip().splitlines()[-1])
        after = self.settled(end + 0.2)
        with self.lock:
            features = list(self.features)
        return report, {k: after[k] - before[k] for k in after}, self.statuses_between(start, end), features


def level(status) -> int:
    value = status.level  # a `byte` field: bytes of length 1 in rclpy
    return int.from_bytes(value, "little") if isinstance(value, bytes) else int(value)


@pytest.fixture(scope="module")
def camera_rig(probe_node, tmp_path_factory) -> Iterator[CameraRig]:
    """One node process for the camera scenarios (the model loads once): the package defaults, from the params
    file, with faster diagnostics (and a shorter stale timeout) only."""
    log = tmp_path_factory.mktemp("camera_rig") / "node.log"
    command = [
        sys.executable, "-m", "alike_ros", "node", "--ros-args", "--params-file", "config/extractor.yaml",
        "-p", f"weights:={weights()}", "-p", "device:=cpu", "-p", "diagnostics.period:=0.5",
        "-p", "diagnostics.stale_timeout:=1.0", "-r", f"__ns:={CAMERA_NS}", "-r", "image:=image_raw",
    ]  # fmt: skip
    with open(log, "w") as out:
        node = subprocess.Popen(command, cwd=ROOT, env=clean_env(), stdout=out, stderr=subprocess.STDOUT)
    rig = CameraRig(probe_node, node, log)
    try:
        assert wait(lambda: rig.statuses_between(0.0) or node.poll() is not None), "the node never reported"
        assert node.poll() is None, log.read_text()
        yield rig
    finally:
        node.send_signal(signal.SIGINT)
        try:
            node.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            node.kill()
    assert node.returncode == 0, log.read_text()


def check_delivered(report: dict, counts: dict[str, int], features: list[PointCloud2]) -> None:
    sent, received = report["frames_sent"], counts["received"]
    assert sent == FRAMES and report["subscribers_at_start"] >= 1, report
    # Not "missed none" nor 100 %: a frame lost to a momentary stall of a loaded machine must not fail the suite.
    # The failure this guards against delivered 2 of 120 frames.
    assert received >= 0.9 * sent, (report, counts)
    assert counts["missed"] <= sent - received, counts  # a frame is never both received and missed
    assert counts["bad_input"] == counts["model_failure"] == 0, counts
    # Answered: every frame received was processed, or replaced by a newer one while the model was busy.
    assert counts["processed"] + counts["superseded"] == received, counts
    assert counts["processed"] >= sent / 8, counts  # not everything superseded: alike-t keeps up with most of 10 Hz
    # The node publishes `features` reliably; a best-effort subscriber gets the features of most processed frames.
    assert len(features) >= 0.8 * counts["processed"], (len(features), counts)
    assert all(f.header.frame_id == "camera" for f in features)
    assert len(decode_features(features[-1]).keypoints) > 0


def test_reliable_camera_in_another_process(camera_rig):
    report, counts, _, features = camera_rig.run_camera("reliable", profile=False)
    check_delivered(report, counts, features)


def test_best_effort_camera_with_the_shipped_profile(camera_rig):
    """A best-effort camera started as the README says: FASTRTPS_DEFAULT_PROFILES_FILE=<the shipped profile> on
    Jazzy, FASTDDS_DEFAULT_PROFILES_FILE=... on Kilted."""
    report, counts, _, features = camera_rig.run_camera("best_effort", profile=True)
    check_delivered(report, counts, features)


def test_best_effort_camera_without_the_profile_is_diagnosed(camera_rig):
    """Fast DDS's defaults lose best-effort samples over 0.5 MiB between processes: the node says why, and how to fix
    it (the environment variable of the camera's process)."""
    report, counts, statuses, _ = camera_rig.run_camera("best_effort", profile=False)
    assert report["frames_sent"] == FRAMES
    # Lost in numbers that differ by Fast DDS: all on Kilted's 3.2 (0 of 40 arrived here; a few may pass over UDP),
    # about 40 % on Jazzy's 2.14 (24 of 40 arrived). Either way the node names the cause: the stale check when
    # nothing arrives, the sequence gaps when some does.
    assert counts["received"] < FRAMES, counts
    named = [s for s in statuses if level(s) >= 1 and f"{fastdds.variables_read()[0]}=" in s.message]
    assert named, [s.message for s in statuses]
    assert "fastdds_large_data.xml" in named[-1].message


# ---------------------------------------------------------------- two cameras, one node, three processes

RIG_NS = "/proc_rig"


def node_process(namespace: str, log: Path, *params: str) -> subprocess.Popen:
    """The node in its own process under `namespace`: the params file, on the CPU, with `params` (NAME:=VALUE)."""
    command = [sys.executable, "-m", "alike_ros", "node", "--ros-args", "--params-file", "config/extractor.yaml",
               "-p", f"weights:={weights()}", "-p", "device:=cpu", *(a for p in params for a in ("-p", p)),
               "-r", f"__ns:={namespace}"]  # fmt: skip
    with open(log, "w") as out:
        return subprocess.Popen(command, cwd=ROOT, env=clean_env(), stdout=out, stderr=subprocess.STDOUT)


def test_a_fast_and_a_slow_camera_in_other_processes_are_both_served(probe_node, tmp_path):
    """One node, cameras `fast` (VGA at 30 Hz: more than the model keeps up with here) and `slow` (VGA at 4 Hz), each
    a process of its own: the slow camera's frames are all processed, the fast one gets the rest of the model's time
    (superseded frames answered by newer ones), and each camera has its own counters in /diagnostics."""
    statuses: dict[str, list] = {"fast": [], "slow": []}
    lock = threading.Lock()

    def on_diagnostics(msg: DiagnosticArray) -> None:
        with lock:
            for s in msg.status:
                for camera, seen in statuses.items():
                    if s.name == f"{RIG_NS}/extractor/{camera}: alike extractor":
                        seen.append(frame_counters(s))

    probe_node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
    log = tmp_path / "node.log"
    node = node_process(RIG_NS, log, "cameras:=fast,slow", "diagnostics.period:=0.5")
    try:
        assert wait(lambda: all(statuses.values()) or node.poll() is not None), log.read_text()
        assert node.poll() is None, log.read_text()
        cameras = {
            name: subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "alike_ros",
                    "camera",
                    "--size",
                    "640x480",
                    "--rate",
                    rate,
                    "--seconds",
                    "8",
                    "--wait-for-subscribers",
                    str(WAIT),
                    "--ros-args",
                    "-r",
                    f"__ns:={RIG_NS}/{name}",
                ],
                cwd=ROOT,
                env=clean_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            for name, rate in (("fast", "30"), ("slow", "4"))
        }
        reports = {}
        for name, camera in cameras.items():
            out, err = camera.communicate(timeout=2 * WAIT)
            assert camera.returncode == 0, err
            reports[name] = json.loads(out.strip().splitlines()[-1])

        def settled() -> bool:  # every frame received accounted for, in two statuses in a row
            with lock:
                return all(
                    len(seen) >= 2 and seen[-1] == seen[-2] and in_flight(seen[-1]) == 0 for seen in statuses.values()
                )

        assert wait(settled), statuses
        with lock:
            fast, slow = statuses["fast"][-1], statuses["slow"][-1]
    finally:
        node.send_signal(signal.SIGINT)
        node.wait(timeout=WAIT)
    assert node.returncode == 0, log.read_text()
    assert slow["received"] >= 0.9 * reports["slow"]["frames_sent"], (reports, slow)
    assert slow["processed"] >= 0.9 * slow["received"], slow  # never starved by the fast camera
    assert fast["received"] >= 0.9 * reports["fast"]["frames_sent"], (reports, fast)
    assert fast["processed"] + fast["superseded"] == fast["received"], fast
    assert fast["processed"] >= slow["processed"], (fast, slow)  # the rest of the model's time goes to it
    assert fast["superseded"] > 0, fast  # (else the node was not loaded, and this test would prove nothing)


def test_a_stereo_driver_in_another_process_gets_left_right_matches_with_depth(probe_node, tmp_path):
    """A rectified stereo driver (the stand-in camera with --stereo-disparity: left/image, right/image with equal
    stamps, and their camera_info) in its own process, started with the shipped Fast DDS profile as the README tells
    (without it, two VGA streams lost frames on Kilted here, and a frame lost on one side leaves its pair unpaired);
    the node pairs the frames and publishes stereo matches whose disparity and depth are the rig's."""
    namespace, disparity, frames = "/proc_stereo", 6.0, 30
    received: list[PointCloud2] = []
    probe_node.create_subscription(
        PointCloud2,
        f"{namespace}/left/stereo_matches",
        received.append,
        QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE),
    )
    log = tmp_path / "node.log"
    node = node_process(namespace, log, "cameras:=left,right", "stereo.pairs:=left:right")
    try:
        camera = subprocess.run(
            [sys.executable, "-m", "alike_ros", "camera", "--size", "640x480", "--rate", "5", "--frames", str(frames),
             "--stereo-disparity", f"{disparity:g}", "--wait-for-subscribers", str(WAIT), "--fastdds-profile",
             "--ros-args", "-r", f"__ns:={namespace}"],
            cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=2 * WAIT,
        )  # fmt: skip
        assert camera.returncode == 0, camera.stderr
        assert wait(lambda: len(received) >= frames // 2 or node.poll() is not None), (len(received), log.read_text())
    finally:
        node.send_signal(signal.SIGINT)
        node.wait(timeout=WAIT)
    assert node.returncode == 0, log.read_text()
    rows = np.concatenate([decode_stereo_matches(m) for m in received])
    assert len(rows) > 50 * len(received)
    assert abs(np.median(rows["disparity"]) - disparity) < 0.2
    fx = 640.0  # the stand-in rig's camera_info: fx = the width, baseline 0.1 m
    assert abs(np.median(rows["depth"]) - fx * 0.1 / disparity) < 0.5
    assert all(m.header.frame_id == "left_camera" for m in received)
