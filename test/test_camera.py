"""The stand-in camera driver (`python -m alike_ros camera`): its options, frames and schedule."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="the camera publishes sensor_msgs (rclpy)")

from alike_ros.__main__ import COMMANDS  # noqa: E402
from alike_ros.ros import fastdds  # noqa: E402
from alike_ros.ros.camera import FrameSource, Schedule, StopRequest, parse_args, parse_size  # noqa: E402
from alike_ros.ros.conversions import image_to_array  # noqa: E402
from alike_ros.scene import load_photo  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOMAIN = int(os.environ.get("ALIKE_ROS_TEST_DOMAIN", 55 + os.getpid() % 35))  # as test_node_process.py


def test_size_is_width_by_height():
    assert parse_size("640x480") == (640, 480)
    assert parse_size("1280X720") == (1280, 720)
    for bad in ("640", "640x", "x480", "axb", "640x480x3", "0x480", "640x-1", "100000x10"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_size(bad)


def test_options():
    args = parse_args([])
    assert (args.topic, args.size, args.rate, args.reliability, args.depth, args.encoding) == (
        "image",
        (640, 480),
        30.0,
        "reliable",
        5,
        "bgr8",
    )
    assert args.frames is None and args.seconds is None and args.wait_for_subscribers > 0
    args = parse_args(["--size", "1280x720", "--rate", "10", "--seconds", "2.5", "--reliability", "best_effort"])
    assert (args.size, args.rate, args.seconds, args.reliability) == ((1280, 720), 10.0, 2.5, "best_effort")
    for bad in (
        ["--frames", "3", "--seconds", "1"],  # one way to stop
        ["--rate", "0"],
        ["--frames", "-1"],
        ["--reliability", "sometimes"],
        ["--encoding", "rgb16"],
        ["--wait-for-subscribers", "-1"],
    ):
        with pytest.raises(SystemExit):
            parse_args(bad)


def test_camera_is_a_command():
    assert COMMANDS["camera"][0] == "alike_ros.ros.camera"


def test_frames_follow_the_sample_trajectory_inside_the_photograph():
    photo = load_photo()
    white = np.full_like(photo, 255)
    for size in ((64, 48), (160, 90), (40, 120)):  # 4:3, 16:9, portrait: every frame stays inside the photograph
        source = FrameSource(size, period=4, photo=white)
        for k in range(4):
            frame = source.pixels(k)
            assert frame.shape == (size[1], size[0], 3) and frame.dtype == np.uint8
            assert frame.min() > 200, (size, k)
    source = FrameSource((64, 48), period=4, photo=photo)
    assert not np.array_equal(source.pixels(0), source.pixels(1))  # the camera moves
    assert source.pixels(5) is source.pixels(1)  # rendered once per period, then reused
    mono = FrameSource((64, 48), "mono8", period=2, photo=photo)
    assert mono.pixels(0).shape == (48, 64)
    with pytest.raises(ValueError):
        FrameSource((64, 48), "rgb8", period=2, photo=photo)


def test_messages_are_ready_images():
    photo = load_photo()
    for encoding in ("bgr8", "mono8"):
        source = FrameSource((64, 48), encoding, period=3, photo=photo)
        messages = source.messages()
        assert len(messages) == 3
        for k, msg in enumerate(messages):
            assert (msg.width, msg.height, msg.encoding) == (64, 48, encoding)
            pixels, _ = image_to_array(msg)
            np.testing.assert_array_equal(pixels, source.pixels(k))


def test_schedule_counts_late_frames_and_never_bursts():
    schedule = Schedule(rate=10.0, start=100.0)
    assert schedule.sent(100.0) == pytest.approx(100.1)
    assert schedule.sent(100.12) == pytest.approx(100.2)  # 20 ms late: within half a period
    assert schedule.late == 0
    assert schedule.sent(100.27) == pytest.approx(100.3)  # 70 ms late
    assert schedule.late == 1
    # Half a second behind: the next deadline is now, not a burst of the deadlines missed.
    assert schedule.sent(100.8) == pytest.approx(100.8)
    assert schedule.late == 2
    assert schedule.sent(100.8) == pytest.approx(100.9)


def camera(*args: str) -> subprocess.Popen:
    env = {**os.environ, "ROS_DOMAIN_ID": str(DOMAIN), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "alike_ros", "camera", "--size", "64x48", "--period", "4", *args]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_camera_process_reports_what_it_sent():
    process = camera("--rate", "50", "--frames", "5", "--wait-for-subscribers", "0", "--ros-args", "-r", "__ns:=/cam_t")
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["frames_sent"] == 5 and report["topic"] == "/cam_t/image"
    assert report["rate_hz"] > 0 and report["late_frames"] >= 0 and not report["interrupted"]


def test_camera_applies_the_shipped_profile_only_when_asked(monkeypatch):
    assert not parse_args([]).fastdds_profile
    for name in (*fastdds.PROFILE_ENVS, fastdds.OPT_OUT_ENV):
        monkeypatch.delenv(name, raising=False)
    args = ("--rate", "50", "--frames", "2", "--wait-for-subscribers", "0", "--ros-args", "-r", "__ns:=/cam_p")
    process = camera("--fastdds-profile", *args)
    err = process.communicate(timeout=120)[1]
    assert process.returncode == 0, err
    # under the name the Fast DDS of this distribution reads, before its participant was made
    assert f"Fast DDS profile {fastdds.profile_path()} (set as {fastdds.variables_read()[0]})" in err
    process = camera(*args)
    err = process.communicate(timeout=120)[1]
    assert process.returncode == 0 and "Fast DDS profile" not in err, err


def test_camera_process_stops_cleanly_on_sigint():
    process = camera("--rate", "20", "--wait-for-subscribers", "0")
    deadline = time.monotonic() + 120
    lines = []
    while not any("publishing to" in line for line in lines) and time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        lines.append(line)
    time.sleep(0.3)  # (how many frames it sent by then does not matter)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, "".join(lines) + err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["interrupted"] and report["frames_sent"] >= 0


def current_wakeup_fd() -> int:
    fd = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(fd)
    return fd


def test_a_signal_wakes_the_camera_loop_without_a_lock_and_the_old_handlers_come_back():
    handler, wakeup_fd = signal.getsignal(signal.SIGTERM), current_wakeup_fd()
    with StopRequest() as stop:
        assert not stop.wait(0.01) and not stop.is_set()
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()  # from another thread, as DDS's
        start = time.monotonic()
        assert stop.wait(60) and stop.is_set()
        assert time.monotonic() - start < 30  # woken by the signal, not by the timeout
        assert stop.wait(60)  # stays requested: later sleeps return at once
    assert signal.getsignal(signal.SIGTERM) is handler and current_wakeup_fd() == wakeup_fd
