"""A stand-in camera driver: the sample trajectory (bag/sample.py) published live, at a steady rate.

    python -m alike_ros camera [--topic image] [--size 640x480] [--rate 30] [--frames N | --seconds S]
                               [--reliability reliable|best_effort] [--depth 5] [--encoding bgr8|mono8]
                               [--wait-for-subscribers S] [--stereo-disparity D] [--fastdds-profile]
                               [--ros-args ...]

It models a third-party driver in its own process, to test and benchmark the extractor node across processes:
it sets no Fast DDS profile unless told to (--fastdds-profile; otherwise the environment decides, as for any driver:
FASTRTPS_DEFAULT_PROFILES_FILE on Jazzy, FASTDDS_DEFAULT_PROFILES_FILE on Kilted), stamps
each frame with the time it is published (the node's end-to-end latency starts there), publishes to absolute
deadlines (a frame later than half a period is counted late; more than a period behind, the schedule restarts
from now instead of catching up in a burst), and prints one JSON line with what it did when it stops (after
--frames or --seconds, or on SIGINT / SIGTERM).

Frames: the sample photograph seen along the sample bag's periodic trajectory, scaled so that any frame size
stays inside the photograph. Each distinct frame of a period is rendered once, as a ready message, before the
first frame is sent; publishing only sets the header.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import select
import signal
import socket
import sys
import time
from collections.abc import Sequence
from types import FrameType

import cv2
import numpy as np
from sensor_msgs.msg import CameraInfo, Image

from ..scene import StereoScene, homography, load_photo
from . import fastdds
from .conversions import array_to_image

NODE_NAME = "camera"
BASE_SIZE = (240, 320)  # (height, width) the sample trajectory keeps inside the photograph
ENCODINGS = ("bgr8", "mono8")
RELIABILITIES = ("reliable", "best_effort")


def parse_size(text: str) -> tuple[int, int]:
    """`WIDTHxHEIGHT` (e.g. 640x480) -> (width, height); raises argparse.ArgumentTypeError when malformed."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        width, height = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, e.g. 640x480; got {text!r}") from None
    if not (16 <= width <= 8192 and 16 <= height <= 8192):
        raise argparse.ArgumentTypeError(f"width and height must be 16..8192 pixels; got {text!r}")
    return width, height


def _positive(kind: type):
    def check(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a {kind.__name__}: {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0; got {text!r}")
        return value

    return check


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0; got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m alike_ros camera",
        description="Publish the sample camera trajectory as sensor_msgs/Image at a steady rate, like a camera "
        "driver in its own process. Sets no Fast DDS profile unless --fastdds-profile is given: the environment "
        f"decides (a best-effort camera of frames over 0.5 MB needs {fastdds.camera_setting()}). "
        "Prints one JSON line (frames sent, rate achieved, late frames) when it stops.",
        epilog="Anything after --ros-args goes to ROS (e.g. --ros-args -r __ns:=/camera -r image:=image_raw).",
    )
    parser.add_argument("--topic", default="image", help="image topic, relative to the namespace (default: image)")
    parser.add_argument(
        "--size", type=parse_size, default=(640, 480), metavar="WxH", help="frame size in pixels (default: 640x480)"
    )
    parser.add_argument("--rate", type=_positive(float), default=30.0, help="frames per second (default: 30)")
    stop = parser.add_mutually_exclusive_group()
    stop.add_argument("--frames", type=_positive(int), help="stop after this many frames (default: run until SIGINT)")
    stop.add_argument("--seconds", type=_positive(float), help="stop after this many seconds of publishing")
    parser.add_argument(
        "--reliability", choices=RELIABILITIES, default="reliable", help="publisher QoS reliability (default: reliable)"
    )
    parser.add_argument(
        "--depth", type=_positive(int), default=5, help="publisher QoS history depth, keep last (default: 5)"
    )
    parser.add_argument("--encoding", choices=ENCODINGS, default="bgr8", help="image encoding (default: bgr8)")
    parser.add_argument("--frame-id", default="camera", help="header frame_id (default: camera)")
    parser.add_argument(
        "--period",
        type=_positive(int),
        default=60,
        help="frames per cycle of the trajectory, each rendered once (default: 60, as the sample bag)",
    )
    parser.add_argument(
        "--wait-for-subscribers",
        type=_non_negative,
        default=10.0,
        metavar="S",
        help="wait up to S seconds for a subscriber before the first frame; 0: do not wait (default: 10)",
    )
    parser.add_argument(
        "--settle",
        type=_non_negative,
        default=1.0,
        metavar="S",
        help="after a subscriber appeared, wait S more seconds (and for a subscriber again) before the first frame: "
        "a subscriber that follows the publisher's QoS, like the extractor's `auto` input, re-subscribes on "
        "seeing it (default: 1)",
    )
    parser.add_argument(
        "--stereo-disparity",
        type=_positive(float),
        metavar="D",
        help="a rectified stereo driver instead: left/<topic> and right/<topic> with equal stamps, the right view the "
        "left one moved D px to the left (a plane facing the rig), and left/camera_info, right/camera_info "
        f"(fx = the width, baseline {StereoScene.baseline:g} m)",
    )
    parser.add_argument(
        "--fastdds-profile",
        action="store_true",
        help="apply the package's Fast DDS large-data profile as the node does (unless one is set in the "
        "environment), like a driver started as the README says; default: the environment decides",
    )
    return parser


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse the camera's own options (no ROS arguments in `argv`)."""
    return build_parser().parse_args(list(argv))


class FrameSource:
    """The frames of one period of the sample trajectory at `size` (width, height), rendered once."""

    def __init__(
        self,
        size: tuple[int, int],
        encoding: str = "bgr8",
        period: int = 60,
        photo: np.ndarray | None = None,
        view: np.ndarray | None = None,
    ):
        """`view`: a 3 x 3 map of frame pixels applied after the trajectory (the right camera of a stereo rig)."""
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {', '.join(ENCODINGS)}; got {encoding!r}")
        self.size, self.encoding, self.period = size, encoding, period
        self._view = np.eye(3) if view is None else view
        self._photo = load_photo() if photo is None else photo
        self._frames = [self.render(k) for k in range(period)]

    def homography(self, k: int) -> np.ndarray:
        """H mapping photo pixels to pixels of frame k: the sample trajectory at 320x240, scaled up to `size`."""
        width, height = self.size
        scale = max(width / BASE_SIZE[1], height / BASE_SIZE[0])
        base = homography((k % self.period) / self.period, 0, self._photo.shape[:2], (height / scale, width / scale))
        zoom = np.array([[scale, 0, (scale - 1) / 2], [0, scale, (scale - 1) / 2], [0, 0, 1]])  # pixel centres
        return self._view @ zoom @ base

    def render(self, k: int) -> np.ndarray:
        width, height = self.size
        bgr = cv2.warpPerspective(self._photo, self.homography(k), (width, height), flags=cv2.INTER_LINEAR)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if self.encoding == "mono8" else bgr

    def pixels(self, k: int) -> np.ndarray:
        return self._frames[k % self.period]

    def messages(self) -> list[Image]:
        """One ready Image per distinct frame (header left empty): publishing then only sets the header."""
        return [array_to_image(frame, self.encoding) for frame in self._frames]


class Schedule:
    """Absolute deadlines at `rate` Hz from `start`; a frame later than half a period is late, and more than a
    period behind, the schedule restarts from now (a camera does not send a burst to catch up)."""

    def __init__(self, rate: float, start: float):
        self.period = 1.0 / rate
        self.deadline = start
        self.late = 0

    def sent(self, now: float) -> float:
        """Record a frame sent at `now`; returns the next deadline."""
        if now - self.deadline > self.period / 2:
            self.late += 1
        self.deadline += self.period
        if now - self.deadline > self.period:
            self.deadline = now
        return self.deadline


class StopRequest:
    """SIGINT / SIGTERM as a request to stop, which the publishing loop polls and sleeps on (a context manager that
    puts the previous handlers back).

    The handler only sets a flag. A `threading.Event` set from a handler deadlocks when the signal lands while the
    main thread holds the event's lock inside `wait`, which hung this camera on SIGINT now and then; here sleeps wake
    through Python's signal wakeup fd instead, and no lock is taken."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self._wakeup, self._writer = socket.socketpair()
        for end in (self._wakeup, self._writer):
            end.setblocking(False)

    def __enter__(self) -> StopRequest:
        self._previous_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        self._previous = {sig: signal.signal(sig, self._request) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(self._previous_fd)
        self._wakeup.close()
        self._writer.close()

    def _request(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True

    def is_set(self) -> bool:
        return self.requested

    def wait(self, timeout: float) -> bool:
        """Sleep up to `timeout` seconds or until a signal arrives; whether a stop was requested."""
        if not self.requested and select.select([self._wakeup], [], [], max(0.0, timeout))[0]:
            with contextlib.suppress(BlockingIOError):
                self._wakeup.recv(4096)  # the signal numbers Python wrote; only the wake-up matters
        return self.requested


def main(argv: list[str] | None = None) -> int:
    with StopRequest() as stop:
        return _run(stop, sys.argv[1:] if argv is None else list(argv))


def _run(stop: StopRequest, argv: list[str]) -> int:
    import rclpy
    from rclpy.duration import Duration
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from rclpy.signals import SignalHandlerOptions
    from rclpy.utilities import remove_ros_args

    args = parse_args(remove_ros_args([NODE_NAME, *argv])[1:])
    rig = StereoScene(*args.size, args.stereo_disparity, args.stereo_disparity) if args.stereo_disparity else None
    matrices = [None, rig.right_from_left] if rig else [None]
    # per camera: one ready message per distinct frame (the messages hold the pixels)
    views = [FrameSource(args.size, args.encoding, args.period, view=m).messages() for m in matrices]
    if args.fastdds_profile:
        print(fastdds.use_large_data_profile(), file=sys.stderr)  # before rclpy.init: read with the participant
    rclpy.init(args=[NODE_NAME, *argv], signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node(NODE_NAME)
    qos = QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=args.depth,
        reliability=ReliabilityPolicy.RELIABLE if args.reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.VOLATILE,
    )
    sides = ("left/", "right/") if args.stereo_disparity else ("",)
    publishers = [node.create_publisher(Image, side + args.topic, qos) for side in sides]
    infos = rig.camera_infos() if rig else ()
    info_publishers = [node.create_publisher(CameraInfo, side + "camera_info", qos) for side in sides[: len(infos)]]
    logger = node.get_logger()
    width, height = args.size
    logger.info(
        f"{width}x{height} {args.encoding} at {args.rate:g} Hz on {', '.join(p.topic_name for p in publishers)} "
        f"({args.reliability}, keep last {args.depth}); {len(views[0])} distinct frames ready"
    )

    def wait_for_subscriber(timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while min(p.get_subscription_count() for p in publishers) == 0:
            if stop.wait(0.02) or time.monotonic() > deadline:
                return False
        return True

    if args.wait_for_subscribers > 0:
        waited = time.monotonic()
        if wait_for_subscriber(args.wait_for_subscribers):
            stop.wait(args.settle)
            wait_for_subscriber(max(0.0, args.wait_for_subscribers - (time.monotonic() - waited)))
        elif not stop.is_set():
            logger.warning(f"no subscriber after {args.wait_for_subscribers:g} s; publishing anyway")
    subscribers = min(p.get_subscription_count() for p in publishers)
    if not stop.is_set():
        logger.info(f"publishing to {subscribers} subscriber(s)")

    sent = 0
    first = last = time.monotonic()
    schedule = Schedule(args.rate, first)
    end = first + args.seconds if args.seconds else float("inf")
    try:
        while not stop.is_set() and (args.frames is None or sent < args.frames):
            stamp = node.get_clock().now().to_msg()  # one instant for every camera of the rig
            for i, (side, pub, messages) in enumerate(zip(sides, publishers, views, strict=True)):
                msg = messages[sent % len(messages)]
                msg.header.frame_id = f"{side.strip('/')}_{args.frame_id}" if side else args.frame_id
                msg.header.stamp = stamp
                pub.publish(msg)
                if infos:  # as stereo drivers do: each image's camera_info with its header
                    infos[i].header = msg.header
                    info_publishers[i].publish(infos[i])
            last = time.monotonic()
            sent += 1
            next_deadline = schedule.sent(last)
            if next_deadline >= end:
                break
            stop.wait(max(0.0, next_deadline - time.monotonic()))
    finally:
        if args.reliability == "reliable" and sent and not stop.is_set():
            for pub in publishers:  # the last frames reach the subscribers first
                pub.wait_for_all_acked(Duration(seconds=1.0))
        elapsed = last - first
        report = {
            "frames_sent": sent,
            "rate_hz": round((sent - 1) / elapsed, 3) if sent > 1 and elapsed > 0 else 0.0,
            "target_rate_hz": args.rate,
            "late_frames": schedule.late,
            "seconds": round(elapsed, 3),
            "size": f"{width}x{height}",
            "encoding": args.encoding,
            "reliability": args.reliability,
            "topic": ", ".join(p.topic_name for p in publishers),
            "subscribers_at_start": subscribers,
            "interrupted": stop.is_set(),
        }
        print(json.dumps(report), flush=True)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
