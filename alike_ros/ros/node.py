"""The extractor node: images in; features, matches, tracks, a debug image and /diagnostics out.

The subscription callback only hands the message to a one-slot mailbox; a worker thread takes the newest
frame, so a slow model or a slow consumer never builds a backlog (every frame replaced unread is counted).
Parameter changes are validated, then applied between frames: detector and matching settings take effect
on the next frame, a new model is built and warmed up beside the old one and swapped in only if it loads.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy._rclpy_pybind11 import RCLError
from rclpy.clock import Clock, ClockType
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import ReliabilityPolicy
from rclpy.time import Time
from rclpy.utilities import remove_ros_args
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud, PointCloud2
from std_msgs.msg import Header

from .. import parameters
from ..drawing import draw_tracks
from ..matching.tracker import TrackedFrame
from ..model.weights import WeightsError
from ..monitoring import SequenceGaps, Snapshot, Statistics, assess, transport_cause
from ..pipeline import FramePipeline, FrameResult
from . import params
from .conversions import array_to_image, compressed_to_array, image_to_array, to_bgr8
from .diagnostics import to_status
from .fastdds import camera_setting, profile_in_effect, use_large_data_profile
from .messages import encode_features, encode_matches
from .vins import CameraModel, encode_vins

NODE_NAME = "extractor"
# What rclpy passes a two-argument subscription callback: rmw's message info as a dict (Kilted's rclpy names the type
# rclpy.subscription.MessageInfo; Jazzy's has no name for it, and no publisher_gid in it).
MessageInfo = Mapping[str, Any]
INPUT_REVIEW_PERIOD = 1.0  # s of steady time between checks of the input publishers' QoS (events come first)


class LatestFrame:
    """A one-slot mailbox: `put` replaces what was not yet taken and says so."""

    def __init__(self):
        self._cond = threading.Condition()
        self._item: Image | CompressedImage | None = None

    def put(self, item: Image | CompressedImage) -> bool:
        with self._cond:
            replaced = self._item is not None
            self._item = item
            self._cond.notify()
            return replaced

    def take(self, timeout: float) -> Image | CompressedImage | None:
        with self._cond:
            if self._item is None:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item


class ExtractorNode(Node):
    def __init__(self, **kwargs: Any):
        self._worker: threading.Thread | None = None  # destroy_node may run on a half-built node
        super().__init__(NODE_NAME, **kwargs)
        for p in parameters.PARAMETERS:
            self.declare_parameter(p.name, p.default, params.descriptor(p))
        self._values = {p.name: self.get_parameter(p.name).value for p in parameters.PARAMETERS}
        parameters.validate(self._values)  # a bad params file stops the node here, with the reason
        self._stats = Statistics(self._values["diagnostics.window"], self.get_clock().now().nanoseconds)
        self._pipeline = FramePipeline(parameters.pipeline_config(self._values))
        self.get_logger().info(
            f"{self._values['model']} on {self._pipeline.extractor.device}, "
            f"warmed up with {self._values['warmup_frames']} frame(s) at {self._values['warmup_sizes']}"
        )

        out_qos = params.qos_profile(self._values["output.qos.reliability"], self._values["output.qos.depth"])
        self._features_pub = self.create_publisher(PointCloud2, "features", out_qos)
        self._matches_pub = self.create_publisher(PointCloud2, "matches", out_qos)
        self._debug_pub = self.create_publisher(Image, "debug_image", out_qos)
        self._vins_pub = None
        self._camera_info_sub = None
        self._camera: CameraModel | None = None
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

        self._mailbox = LatestFrame()
        self._gaps = SequenceGaps()  # frames the input's publishers sent that never arrived
        self._image_sub = None
        self._input_reliability = ""  # what the current subscription asked for
        self._last_offered: list[str] = []  # what the input's publishers offered, as last seen while there were any
        self._publisher_count = 0  # of the input, as last reviewed
        self._input_lock = threading.RLock()  # parameter changes and publisher events both resubscribe
        self._camera_setting = camera_setting()  # named in diagnostics when frames go missing
        self._profile_in_effect = profile_in_effect()  # read by Fast DDS when the participant was made, before here
        self._subscribe_input()
        # Publishers come and go without a parameter change: follow them (the events of the subscription call
        # the same review at once; this steady timer also runs while a bag's /clock is paused).
        self._input_review_timer = self.create_timer(
            INPUT_REVIEW_PERIOD, self._review_input_qos, clock=Clock(clock_type=ClockType.STEADY_TIME)
        )
        self._configure_vins()
        self._running = True
        self._worker = threading.Thread(target=self._work, name="alike_worker", daemon=True)
        self._worker.start()
        self._diagnostics_timer = self.create_timer(self._values["diagnostics.period"], self._publish_diagnostics)
        self.add_on_set_parameters_callback(self._on_set_parameters)

    # ---------------------------------------------------------------- inputs

    def _input_topic(self) -> tuple[type, str]:
        if self._values["input.transport"] == "compressed":
            return CompressedImage, self.resolve_topic_name("image/compressed")
        return Image, self.resolve_topic_name("image")

    def _offered_reliability(self, topic: str) -> list[str]:
        """The reliability each publisher of `topic` offers, as parameter values."""
        return [
            "reliable" if info.qos_profile.reliability == ReliabilityPolicy.RELIABLE else "best_effort"
            for info in self.get_publishers_info_by_topic(topic)
        ]

    def _subscribe_input(self) -> None:
        """(Re)subscribe the input with the transport, depth and reliability the parameters and publishers ask."""
        with self._input_lock:
            if self._image_sub is not None:
                self.destroy_subscription(self._image_sub)
            msg_type, topic = self._input_topic()
            offered = self._offered_reliability(topic)
            self._input_reliability = params.input_reliability(self._values["input.qos.reliability"], offered)
            qos = params.qos_profile(self._input_reliability, self._values["input.qos.depth"])
            events = SubscriptionEventCallbacks(
                matched=lambda _: self._review_input_qos(), incompatible_qos=lambda _: self._review_input_qos()
            )
            self._image_sub = self.create_subscription(msg_type, topic, self._on_image, qos, event_callbacks=events)
        self.get_logger().info(
            f"subscribed to {topic} ({self._input_reliability}, keep last {self._values['input.qos.depth']}; "
            f"publishers offer: {', '.join(offered) or 'none yet'})"
        )

    def _review_input_qos(self) -> None:
        """Follow the input's publishers: note a camera's arrival (for the stale check) and what they offer (for
        the cause of frames gone missing, even after they left); with `auto`, resubscribe when their reliability
        no longer matches the subscription's."""
        with self._input_lock:
            offered = self._offered_reliability(self._input_topic()[1])
            if offered and not self._publisher_count:
                self._stats.on_publisher_appeared(self.get_clock().now().nanoseconds)
            self._publisher_count = len(offered)
            self._last_offered = offered or self._last_offered
            auto = self._values["input.qos.reliability"] == "auto"
            if auto and params.input_reliability("auto", offered) != self._input_reliability:
                self._subscribe_input()

    @property
    def input_reliability(self) -> str:
        """The reliability the input subscription uses now (`auto` resolved)."""
        return self._input_reliability

    def _configure_vins(self) -> None:
        enabled = self._values["output.vins_layout"] != "none"
        if enabled and self._vins_pub is None:
            out_qos = params.qos_profile(self._values["output.qos.reliability"], self._values["output.qos.depth"])
            self._vins_pub = self.create_publisher(PointCloud, "features_vins", out_qos)
            self._camera_info_sub = self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, 10)
        elif not enabled and self._camera_info_sub is not None:
            # The publisher stays: the worker may be publishing on it right now; it just stops being used.
            self.destroy_subscription(self._camera_info_sub)
            self._camera_info_sub = None

    def _on_image(self, msg: Image | CompressedImage, info: MessageInfo) -> None:
        self._stats.on_received(self.get_clock().now().nanoseconds)
        self._count_missed(info)
        if self._mailbox.put(msg):
            self._stats.on_dropped("superseded")

    def _count_missed(self, info: MessageInfo) -> None:
        if missed := self._gaps.missed(info, self._publisher_count):
            self._stats.on_dropped("missed", count=missed)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            self._camera = CameraModel(msg)
        except ValueError as exc:
            self._camera = None
            self.get_logger().warning(f"ignoring camera_info: {exc}", throttle_duration_sec=10.0)

    # ---------------------------------------------------------------- worker

    def _work(self) -> None:
        while self._running:
            msg = self._mailbox.take(timeout=0.1)
            if msg is None:
                continue
            try:
                self._process(msg)
            except Exception as exc:  # never let one frame end the worker; counted with the model's failures
                self._stats.on_dropped("model_failure", repr(exc))
                self.get_logger().error(f"frame failed: {exc!r}", throttle_duration_sec=5.0)

    def _process(self, msg: Image | CompressedImage) -> None:
        stages: dict[str, float] = {}
        start = time.perf_counter()
        try:
            pixels, color = compressed_to_array(msg) if isinstance(msg, CompressedImage) else image_to_array(msg)
        except ValueError as exc:
            self._stats.on_dropped("bad_input", str(exc))
            self.get_logger().warning(f"dropping bad image: {exc}", throttle_duration_sec=5.0)
            return
        stages["conversion"] = (time.perf_counter() - start) * 1e3

        stamp = Time.from_msg(msg.header.stamp)
        try:
            result = self._pipeline(pixels, color, stamp.nanoseconds)  # read once: a reload may swap it meanwhile
        except ValueError as exc:  # the image itself is unusable (e.g. too large for the extractor)
            self._stats.on_dropped("bad_input", str(exc))
            self.get_logger().warning(f"dropping bad image: {exc}", throttle_duration_sec=5.0)
            return
        except Exception as exc:  # a model failure (e.g. out of memory) must not stop the node
            self._stats.on_dropped("model_failure", repr(exc))
            self.get_logger().error(f"model failed on a frame: {exc!r}", throttle_duration_sec=5.0)
            return
        if result.reset:
            self.get_logger().info(f"restarting tracks: {result.reset} (a bag looped, or another camera?)")
        stages.update(result.timings)

        start = time.perf_counter()
        self._publish(msg, pixels, color, result)
        stages["publishing"] = (time.perf_counter() - start) * 1e3
        now = self.get_clock().now()
        self._stats.on_processed(now.nanoseconds, stages, (now - stamp).nanoseconds / 1e6)

    def _publish(self, msg: Image | CompressedImage, pixels: np.ndarray, color: str, result: FrameResult) -> None:
        header, tracked = msg.header, result.tracked
        self._features_pub.publish(encode_features(header, tracked, self._values["output.descriptor_type"]))
        if self._values["matching.enabled"]:
            self._matches_pub.publish(encode_matches(header, result.previous_stamp_ns, tracked))
        if self._values["debug_image.enabled"] and self._debug_pub.get_subscription_count() > 0:
            drawn = draw_tracks(to_bgr8(pixels, color), tracked)
            self._debug_pub.publish(array_to_image(drawn, "bgr8", header))
        if self._values["output.vins_layout"] != "none":
            self._publish_vins(header, tracked, result.previous_stamp_ns)

    def _publish_vins(self, header: Header, tracked: TrackedFrame, previous_stamp_ns: int | None) -> None:
        camera = self._camera
        if camera is None:
            self.get_logger().warning("features_vins needs camera_info; none received yet", throttle_duration_sec=10.0)
            return
        now_ns = Time.from_msg(header.stamp).nanoseconds
        dt = (now_ns - previous_stamp_ns) / 1e9 if previous_stamp_ns is not None else 0.0
        try:
            self._vins_pub.publish(encode_vins(header, tracked, self._values["output.vins_layout"], camera, dt))
        except ValueError as exc:
            self.get_logger().warning(f"features_vins skipped: {exc}", throttle_duration_sec=10.0)

    # ---------------------------------------------------------------- diagnostics

    def statistics(self) -> Snapshot:
        """The figures /diagnostics reports, with level and message, at this instant."""
        now = self.get_clock().now().nanoseconds
        offered = self._offered_reliability(self._image_sub.topic_name)
        snap = assess(
            self._stats.snapshot(now),
            budget_ms=self._values["diagnostics.latency_budget_ms"],
            stale_s=self._stats.stale_seconds(now),
            stale_timeout=self._values["diagnostics.stale_timeout"],
            publishers=len(offered),
            cause=transport_cause(self._input_reliability, offered or self._last_offered, self._camera_setting),
        )
        snap.extra = {
            "model": self._values["model"],
            "input_topic": self._image_sub.topic_name,
            "input.qos.reliability": self._input_reliability,
            "input.publishers": ", ".join(offered),
            "fastdds.profile": self._profile_in_effect,
            "fastdds.camera_setting": self._camera_setting,
        }
        return snap

    def _publish_diagnostics(self) -> None:
        snap = self.statistics()
        self._stats.start_period()
        status = to_status(
            snap, f"{self.get_fully_qualified_name()}: alike extractor", str(self._pipeline.extractor.device)
        )
        self._diagnostics_pub.publish(
            DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()), status=[status])
        )

    # ---------------------------------------------------------------- parameters

    def _on_set_parameters(self, changes: list[Parameter]) -> SetParametersResult:
        mine = {p.name: p.value for p in changes if p.name in parameters.BY_NAME}
        if not mine:
            return SetParametersResult(successful=True)
        values = {**self._values, **mine}
        try:
            parameters.validate(values)
            self._apply(values, set(mine))
        except (ValueError, WeightsError) as exc:
            self.get_logger().warning(f"rejected parameter change {mine}: {exc}")
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _apply(self, values: dict[str, Any], changed: set[str]) -> None:
        """Make `values` current; raises (and changes nothing) when a new model cannot be loaded."""
        config = parameters.pipeline_config(values)
        if changed & parameters.MODEL_KEYS:
            self.get_logger().info(f"loading {values['model']} on {values['device']} ...")
            pipeline = FramePipeline(config)  # beside the running one, which serves frames meanwhile
            self._pipeline = pipeline
            self.get_logger().info(f"{values['model']} loaded on {pipeline.extractor.device}")
        else:
            self._pipeline.reconfigure(config)
        self._values = values
        if changed & parameters.INPUT_KEYS:
            self._subscribe_input()
        if "output.vins_layout" in changed:
            self._configure_vins()
        if "diagnostics.window" in changed:
            self._stats.resize(values["diagnostics.window"])
        if "diagnostics.period" in changed:
            self.destroy_timer(self._diagnostics_timer)
            self._diagnostics_timer = self.create_timer(values["diagnostics.period"], self._publish_diagnostics)

    # ---------------------------------------------------------------- shutdown

    def destroy_node(self) -> None:
        self._running = False
        if self._worker is not None:
            self._worker.join()  # the frame in progress finishes (its publishing may fail once shut down)
        super().destroy_node()


def _interrupt_once() -> Callable[[int, FrameType | None], None]:
    """A SIGINT handler that raises KeyboardInterrupt the first time only. `ros2 launch` (stdin not a terminal)
    and a Ctrl-C to the process group send a second SIGINT while the node shuts down: it must not end the shutdown
    with a traceback. SIGTERM and SIGKILL still end the process."""
    interrupted = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal interrupted
        if not interrupted:
            interrupted = True
            raise KeyboardInterrupt

    return handler


def parser() -> argparse.ArgumentParser:
    table = "\n".join(f"  {p.name} (default {p.default!r}): {p.spec.help}" for p in parameters.PARAMETERS)
    return argparse.ArgumentParser(
        prog="ros2 run alike_ros extractor",
        description="The ALIKE extractor node: images in; features, matches, a debug image and /diagnostics out.",
        epilog="Parameters (--ros-args -p NAME:=VALUE, or --params-file FILE):\n" + table,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def main(argv: list[str] | None = None) -> int:
    """`ros2 run alike_ros extractor` and `python -m alike_ros node`: both accept --ros-args."""
    # rclpy's own handler (installed by init) shuts the context down and then calls this one.
    signal.signal(signal.SIGINT, _interrupt_once())
    try:
        return _run(sys.argv if argv is None else [NODE_NAME, *argv])
    finally:
        # Interpreter shutdown gives SIGINT back its default action, termination: a late second one must not kill
        # the process on its way out.
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run(args: list[str]) -> int:
    logger = rclpy.logging.get_logger(NODE_NAME)
    transport = use_large_data_profile()  # before rclpy.init: Fast DDS reads it when the participant is made
    try:
        parser().parse_args(remove_ros_args(args)[1:])  # -h prints the help; a non-ROS argument: exit 2
        rclpy.init(args=args)
    except RCLError as exc:  # e.g. a params file that does not exist or is not YAML
        logger.fatal(f"cannot start: {str(exc).split(', at ')[0]}")
        return 1
    logger.info(transport)
    try:
        node = ExtractorNode()
    except (ValueError, WeightsError, ParameterException) as exc:
        logger.fatal(f"cannot start: {exc}")
        rclpy.try_shutdown()
        return 1
    except KeyboardInterrupt:  # Ctrl-C while the model loads
        rclpy.try_shutdown()
        return 0
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
