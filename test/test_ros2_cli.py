"""The user path on the real ROS 2 command line: `colcon build`, `source install/setup.bash`, `ros2 launch`, `ros2 run`,
`ros2 param`, `ros2 pkg prefix`.

The package is built with colcon in a temporary workspace (a copy of the checkout's files: nothing is written into
the repository). Commands run as a user types them, through bash after sourcing the ROS environment: on a pip-only
machine the venv made a ROS prefix by ../shared/ros2-cli/install.sh (`. .venv-jazzy/ros_env.sh`, or
`.venv-kilted`'s; scripts/setup_env.sh runs it where ../shared exists), on a ROS install the environment this test
was started in. Images come from this test process (rclpy, a private context), never from the node's process.
Skipped only where no ros2 command line is installed and ../shared/ros2-cli is absent to install one.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import spinning_node, wait_until

ROOT = Path(__file__).resolve().parents[1]
SHARED_CLI = ROOT.parent / "shared" / "ros2-cli"
VENV_ROS_ENV = Path(sys.prefix) / "ros_env.sh"
DOMAIN = 90 + os.getpid() % 30  # 90..119: this module's range; other process tests use other ranges
WAIT = 120.0  # a failure guard on a loaded machine, never a measurement


def ros_environment() -> str:
    """The shell line that makes `ros2` and `colcon` available, as a user's `source .../setup.bash` does."""
    if VENV_ROS_ENV.is_file():
        return f". {shlex.quote(str(VENV_ROS_ENV))}"
    if shutil.which("ros2") and shutil.which("colcon"):  # a ROS 2 install, already sourced
        return "true"
    if SHARED_CLI.is_dir():  # CI: the command line must be there, so a silent skip would hide this test
        pytest.fail(
            f"{SHARED_CLI} exists but the ros2 command line is not installed in {sys.prefix}: run "
            f"`{SHARED_CLI}/install.sh {sys.prefix}` (scripts/setup_env.sh does)"
        )
    pytest.skip(
        "no ros2 command line: no ROS 2 install is sourced, and ../shared/ros2-cli (which installs one in the venv) "
        "is absent",
        allow_module_level=True,
    )


ROS_ENV = ros_environment()
rclpy = pytest.importorskip("rclpy", reason="the test feeds the node with rclpy")

from rclpy.node import Node  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image, PointCloud2  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from alike_ros.ros.conversions import array_to_image  # noqa: E402
from alike_ros.ros.messages import decode_features, decode_stereo_matches  # noqa: E402

TRACEBACK = "Traceback (most recent call last)"
SHIPPED = ("alike-t", "alike-s", "alike-n", "sift-residual", "keynet")  # the models with bundled weights


def source_files() -> list[str]:
    """The checkout's files as a clone would have them (tracked, plus new files git does not ignore)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout.decode()
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"not a git checkout, cannot list the package's files: {exc}")
    return [name for name in listed.split("\0") if name and (ROOT / name).is_file()]


@dataclass
class Workspace:
    root: Path
    env: dict[str, str]

    def shell(self, command: str) -> list[str]:
        """bash running `command` in the sourced ROS environment plus this workspace's install."""
        setup = shlex.quote(str(self.root / "install" / "setup.bash"))
        return ["bash", "-c", f"{ROS_ENV} && . {setup} && {command}"]

    def run(self, command: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.shell(command),
            cwd=cwd or self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=WAIT,
        )

    def start(self, command: str, log: Path, cwd: Path | None = None) -> subprocess.Popen:
        """In its own process group (setsid), so the test signals the launch or run and everything under it;
        SIGINT restored to its default (a background job of a script starts with it ignored)."""
        with open(log, "w") as out:
            return subprocess.Popen(
                ["env", "--default-signal=INT", *self.shell(f"exec {command}")],
                cwd=cwd or self.root,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )


def stop(process: subprocess.Popen, log: Path) -> tuple[int, str]:
    """SIGINT to the process group, as Ctrl-C in a terminal; SIGKILL only when that did not end it."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=WAIT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return -signal.SIGKILL, log.read_text() + "\n[test: still running after SIGINT, killed]"
    with contextlib.suppress(ProcessLookupError):  # nodes left in the group (should be none) must not outlive it
        os.killpg(process.pid, signal.SIGKILL)
    return process.returncode, log.read_text()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    root = tmp_path_factory.mktemp("ros2_ws")
    package = root / "src" / "alike_ros"
    for name in source_files():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, package / name)
    env = {
        **os.environ,
        "ROS_DOMAIN_ID": str(DOMAIN),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "PYTHONUNBUFFERED": "1",
    }
    ws = Workspace(root, env)
    # no install/setup.bash yet: build in the ROS environment alone
    build = subprocess.run(
        ["bash", "-c", f"{ROS_ENV} && colcon build --packages-select alike_ros"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    assert (root / "install" / "setup.bash").is_file()
    return ws


@pytest.fixture(scope="module")
def probe() -> Iterator[Node]:
    with spinning_node("ros2_cli_probe", DOMAIN) as node:
        yield node


def wait(predicate, timeout: float = WAIT) -> bool:
    return wait_until(predicate, timeout)


class Feeder:
    """The test's side of the node: a reliable image publisher and a features subscription, kept for the test."""

    def __init__(self, probe: Node, namespace: str, image_topic: str, process: subprocess.Popen, log: Path):
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.probe, self.process, self.log = probe, process, log
        self.received: list[PointCloud2] = []
        self.subscription = probe.create_subscription(
            PointCloud2, f"{namespace}/features", self.received.append, reliable
        )
        self.publisher = probe.create_publisher(Image, f"{namespace}/{image_topic}", reliable)
        self.frames = 0

    def close(self) -> None:
        self.probe.destroy_publisher(self.publisher)
        self.probe.destroy_subscription(self.subscription)

    def features(self, image: np.ndarray) -> tuple[PointCloud2, list[Header]]:
        """Publish new frames until a features message comes back; returns it with the headers sent meanwhile."""
        assert wait(lambda: self.publisher.get_subscription_count() > 0 or self.process.poll() is not None), (
            f"the node never subscribed {self.publisher.topic_name}:\n{self.log.read_text()}"
        )
        assert self.process.poll() is None, f"exited with {self.process.returncode}:\n{self.log.read_text()}"
        self.received.clear()
        sent: list[Header] = []
        deadline = time.monotonic() + WAIT
        while not self.received and time.monotonic() < deadline and self.process.poll() is None:
            self.frames += 1
            sent.append(Header(frame_id="cli_cam", stamp=self.probe.get_clock().now().to_msg()))
            self.publisher.publish(array_to_image(np.roll(image, 3 * self.frames, axis=1), "mono8", sent[-1]))
            wait(lambda: bool(self.received), timeout=5.0)  # pacing only; no assertion on time
        assert self.received, f"no features for {len(sent)} images:\n{self.log.read_text()}"
        return self.received[0], sent


def check_features(message: PointCloud2, sent: list[Header]) -> None:
    assert message.header in sent  # the header of the image it came from, copied unchanged
    assert message.header.frame_id == "cli_cam"
    assert len(decode_features(message).keypoints) > 0


def param(workspace: Workspace, verb: str, *args: str) -> str:
    """`ros2 param VERB /camera/extractor ...`; retried while the CLI's own node has not discovered the extractor."""
    command = " ".join(shlex.quote(a) for a in ("ros2", "param", verb, "--no-daemon", "/camera/extractor", *args))
    deadline = time.monotonic() + WAIT
    while True:
        result = workspace.run(command)
        output = result.stdout + result.stderr
        if "Node not found" not in output or time.monotonic() > deadline:
            return f"[rc {result.returncode}] {output}"
        time.sleep(0.5)


def test_installed_share_folder_and_weights(workspace):
    result = workspace.run("ros2 pkg prefix --share alike_ros")
    assert result.returncode == 0, result.stderr
    share = Path(result.stdout.strip())
    assert share == workspace.root / "install" / "alike_ros" / "share" / "alike_ros"
    for name in ("config/extractor.yaml", "config/fastdds_large_data.xml", "launch/extractor.launch.py", "package.xml"):
        assert (share / name).is_file(), f"{name} is not installed in {share}"
    # what a ROS user needs, not the training configs (alike_ros/training/configs/, research/training/)
    assert sorted(p.name for p in (share / "config").iterdir()) == ["extractor.yaml", "fastdds_large_data.xml"]
    # the installed package, not the checkout's editable install, is what runs; its bundled weights are there
    result = workspace.run(
        "python3 -c 'import sys, alike_ros; from alike_ros.model.weights import bundled_weights_path as w; "
        "print(alike_ros.__file__); [print(w(m)) for m in sys.argv[1:]]' " + " ".join(SHIPPED),
        cwd=workspace.root.parent,
    )
    assert result.returncode == 0, result.stderr
    module, *weights = (Path(line) for line in result.stdout.split())
    assert module.is_relative_to(workspace.root / "install"), module
    assert len(weights) == len(SHIPPED)
    for path in weights:
        assert path.is_relative_to(workspace.root / "install") and path.is_file(), path


def test_ros2_launch_features_and_parameters(workspace, probe, textured_image, tmp_path):
    log = tmp_path / "launch.log"
    process = workspace.start(
        # alike-n: the paper's normal variant starts from the install with no weights file given (issue 14)
        "ros2 launch alike_ros extractor.launch.py namespace:=camera image:=image_raw device:=cpu model:=alike-n",
        log,
    )
    feeder = Feeder(probe, "/camera", "image_raw", process, log)
    try:
        message, sent = feeder.features(textured_image)
        check_features(message, sent)
        assert decode_features(message).descriptors.shape[1] == 128  # alike-n's D

        output = param(workspace, "set", "detector.window_size", "7")
        assert "Set parameter successful" in output, output
        output = param(workspace, "get", "detector.window_size")
        assert "Integer value is: 7" in output, output
        output = param(workspace, "set", "detector.window_size", "4")  # even: rejected, the old value stays
        assert "Setting parameter failed" in output and "Set parameter successful" not in output, output
        output = param(workspace, "get", "detector.window_size")
        assert "Integer value is: 7" in output, output

        check_features(*feeder.features(textured_image))  # still answering, with the new window
    finally:
        feeder.close()
        returncode, output = stop(process, log)
    assert returncode == 0, output
    assert TRACEBACK not in output, output
    assert "process has died" not in output, output


def test_ros2_launch_a_stereo_rig(workspace, probe, textured_image, tmp_path):
    """`stereo:=left:right` on the launch line: the two cameras, paired, and their left-right matches."""
    log = tmp_path / "stereo.log"
    process = workspace.start(
        "ros2 launch alike_ros extractor.launch.py namespace:=cli_rig stereo:=left:right device:=cpu", log
    )
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    received: list[PointCloud2] = []
    subscription = probe.create_subscription(PointCloud2, "/cli_rig/left/stereo_matches", received.append, reliable)
    publishers = [probe.create_publisher(Image, f"/cli_rig/{side}/image", reliable) for side in ("left", "right")]
    height, width = textured_image.shape
    right = cv2.warpAffine(textured_image, np.float32([[1, 0, -5.0], [0, 1, 0]]), (width, height))
    try:
        assert wait(lambda: all(p.get_subscription_count() for p in publishers) or process.poll() is not None)
        deadline = time.monotonic() + WAIT
        while not received and time.monotonic() < deadline and process.poll() is None:
            header = Header(frame_id="cli_rig", stamp=probe.get_clock().now().to_msg())  # one stamp: one instant
            for publisher, image in zip(publishers, (textured_image, right), strict=True):
                publisher.publish(array_to_image(image, "mono8", header))
            wait(lambda: bool(received), timeout=5.0)  # pacing only; no assertion on time
        assert received, log.read_text()
        rows = decode_stereo_matches(received[0])
        assert len(rows) > 10 and abs(np.median(rows["disparity"]) - 5.0) < 0.3, rows["disparity"]
    finally:
        for publisher in publishers:
            probe.destroy_publisher(publisher)
        probe.destroy_subscription(subscription)
        returncode, output = stop(process, log)
    assert returncode == 0, output
    assert TRACEBACK not in output, output


def test_ros2_run_with_the_installed_params_file(workspace, probe, textured_image, tmp_path):
    elsewhere = tmp_path / "elsewhere"  # not the source tree: the params file must come from the install
    elsewhere.mkdir()
    log = tmp_path / "run.log"
    process = workspace.start(
        "ros2 run alike_ros extractor --ros-args "
        '--params-file "$(ros2 pkg prefix --share alike_ros)/config/extractor.yaml" -p device:=cpu '
        "-r __ns:=/cli_run",
        log,
        cwd=elsewhere,
    )
    feeder = Feeder(probe, "/cli_run", "image", process, log)
    try:
        check_features(*feeder.features(textured_image))
    finally:
        feeder.close()
        returncode, output = stop(process, log)
    assert returncode == 0, output
    assert TRACEBACK not in output, output
