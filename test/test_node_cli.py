"""The node's command line as a user meets it: help, wrong arguments, a missing params file, and Ctrl-C twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("rclpy", reason="the node needs rclpy")

from alike_ros import parameter_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOMAIN = 90 + os.getpid() % 30  # 90..119, like the ros2 CLI test: a node started here never meets another test's
WAIT = 120.0  # a failure guard, never a measurement


def node(*args: str) -> subprocess.Popen:
    env = {**os.environ, "ROS_DOMAIN_ID": str(DOMAIN), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    return subprocess.Popen(
        [sys.executable, "-m", "alike_ros", "node", *args],
        cwd=ROOT,
        env={**env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finished(*args: str) -> tuple[int, str]:
    process = node(*args)
    output = process.communicate(timeout=WAIT)[0]
    return process.returncode, output


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_lists_every_parameter_and_starts_nothing(flag):
    code, output = finished(flag)
    assert code == 0 and "usage:" in output
    assert all(name in output for name in parameter_table.BY_NAME)
    assert "Fast DDS" not in output  # nothing was started


def test_an_unknown_argument_is_an_error():
    code, output = finished("--foo")
    assert code == 2 and "unrecognized arguments: --foo" in output


def test_a_missing_params_file_is_one_line_not_a_traceback():
    code, output = finished("--ros-args", "--params-file", "/nonexistent/extractor.yaml")
    assert code == 1 and "cannot start" in output and "/nonexistent/extractor.yaml" in output
    assert "Traceback" not in output


def test_a_second_sigint_during_shutdown_ends_cleanly():
    """What `ros2 launch` does when stdin is not a terminal, and a Ctrl-C to the process group."""
    process = node("--ros-args", "-p", "device:=cpu", "-p", "warmup_frames:=50", "-r", "__ns:=/sigint_test")
    lines: list[str] = []
    deadline = time.monotonic() + WAIT
    while not any("Fast DDS" in line for line in lines) and time.monotonic() < deadline:
        lines.append(process.stdout.readline())  # the first log line comes right after rclpy.init
    time.sleep(1.0)  # now loading the model and warming it up (50 inferences)
    process.send_signal(signal.SIGINT)
    time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    output = "".join(lines) + process.communicate(timeout=WAIT)[0]
    assert process.returncode == 0, output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output
