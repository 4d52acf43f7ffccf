"""One camera of the extractor node: its input subscription and QoS, its outputs, tracks, figures and status.

The node owns the model and the worker thread; each camera stream owns what is per camera: the image subscription
(following its publishers' reliability), `features`, `matches`, `debug_image`, `features_vins` and `camera_info`
under its own name, a `FramePipeline` sharing the node's extractor (so its own tracker and reset rules), and its
own `Statistics`. Topics are relative to the node's namespace: the camera named "" uses `image`, `features`, ...;
the camera named `left` uses `left/image`, `left/features`, ...
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.qos import ReliabilityPolicy
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud, PointCloud2
from std_msgs.msg import Header

from .. import parameter_table
from ..drawing import draw_tracks
from ..features import Features
from ..monitoring import SequenceGaps, Snapshot, Statistics, assess, transport_cause
from ..pipeline import FramePipeline, FrameResult
from . import qos
from .conversions import array_to_image, compressed_to_array, image_to_array, to_bgr8
from .diagnostics import to_status
from .messages import encode_features, encode_matches
from .vins import CameraModel, encode_vins

if TYPE_CHECKING:
    from diagnostic_msgs.msg import DiagnosticStatus
    from rclpy.node import Node

# What rclpy passes a two-argument subscription callback: rmw's message info as a dict (Kilted's rclpy names the type
# rclpy.subscription.MessageInfo; Jazzy's has no name for it, and no publisher_gid in it).
MessageInfo = Mapping[str, Any]
ImageMessage = Image | CompressedImage


@dataclass
class Converted:
    """A frame's pixels as converted from its message, and what that took."""

    pixels: np.ndarray
    color: str
    milliseconds: float


@dataclass
class Processed:
    """A frame the camera processed and published: its result and its pixels as converted."""

    result: FrameResult
    pixels: np.ndarray
    color: str


class CameraStream:
    def __init__(
        self,
        node: Node,
        name: str,
        pipeline: FramePipeline,
        values: dict[str, Any],
        deliver: Callable[[ImageMessage], bool],
        camera_setting: str,
        profile_in_effect: str,
    ):
        """`deliver(msg)` hands a received frame on (to the node's inbox, or to its stereo pair) and says whether
        it replaced one not yet processed; `camera_setting` and `profile_in_effect` are named in diagnostics
        (ros.fastdds)."""
        self.node, self.name, self.pipeline = node, name, pipeline
        self._values = values
        self.deliver = deliver  # the node points it at the stereo pair when the camera is in one
        self.extra: Callable[[], dict[str, str]] = dict  # what a stereo pair adds to this camera's status
        self.in_stereo_pair = False
        self._camera_setting, self._profile_in_effect = camera_setting, profile_in_effect
        self._logger = node.get_logger()
        self.stats = Statistics(values["diagnostics.window"], node.get_clock().now().nanoseconds)
        out_qos = qos.profile(values["output.qos.reliability"], values["output.qos.depth"])
        self.features_pub = node.create_publisher(PointCloud2, self.topic("features"), out_qos)
        self.matches_pub = node.create_publisher(PointCloud2, self.topic("matches"), out_qos)
        self.debug_pub = node.create_publisher(Image, self.topic("debug_image"), out_qos)
        self.vins_pub = None
        self.camera_info_sub = None
        self.camera: CameraModel | None = None
        self.image_sub = None
        self._input_reliability = ""  # what the current subscription asked for
        self._last_offered: list[str] = []  # what the input's publishers offered, as last seen while there were any
        self._publisher_count = 0  # of the input, as last reviewed
        self._gaps = SequenceGaps()  # frames the input's publishers sent that never arrived
        self._input_lock = threading.RLock()  # parameter changes and publisher events both resubscribe
        self.subscribe_input()
        self.configure_vins()

    def topic(self, base: str) -> str:
        return f"{self.name}/{base}" if self.name else base

    @property
    def label(self) -> str:
        """How logs and diagnostics name this camera."""
        return self.node.get_fully_qualified_name() + (f"/{self.name}" if self.name else "")

    # ---------------------------------------------------------------- inputs

    def _input_topic(self) -> tuple[type, str]:
        if self._values["input.transport"] == "compressed":
            return CompressedImage, self.node.resolve_topic_name(self.topic("image/compressed"))
        return Image, self.node.resolve_topic_name(self.topic("image"))

    def offered_reliability(self) -> list[str]:
        """The reliability each publisher of the input offers, as parameter values."""
        return [
            "reliable" if info.qos_profile.reliability == ReliabilityPolicy.RELIABLE else "best_effort"
            for info in self.node.get_publishers_info_by_topic(self._input_topic()[1])
        ]

    def subscribe_input(self) -> None:
        """(Re)subscribe the input with the transport, depth and reliability the parameters and publishers ask."""
        with self._input_lock:
            if self.image_sub is not None:
                self.node.destroy_subscription(self.image_sub)
            msg_type, topic = self._input_topic()
            offered = self.offered_reliability()
            self._input_reliability = qos.input_reliability(self._values["input.qos.reliability"], offered)
            profile = qos.profile(self._input_reliability, self._values["input.qos.depth"])
            events = SubscriptionEventCallbacks(
                matched=lambda _: self.review_input_qos(), incompatible_qos=lambda _: self.review_input_qos()
            )
            self.image_sub = self.node.create_subscription(
                msg_type, topic, self._on_image, profile, event_callbacks=events
            )
        self._logger.info(
            f"subscribed to {topic} ({self._input_reliability}, keep last {self._values['input.qos.depth']}; "
            f"publishers offer: {', '.join(offered) or 'none yet'})"
        )

    def review_input_qos(self) -> None:
        """Follow the input's publishers: note a camera's arrival (for the stale check) and what they offer (for
        the cause of frames gone missing, even after they left); with `auto`, resubscribe when their reliability
        no longer matches the subscription's."""
        with self._input_lock:
            offered = self.offered_reliability()
            if offered and not self._publisher_count:
                self.stats.on_publisher_appeared(self.node.get_clock().now().nanoseconds)
            self._publisher_count = len(offered)
            self._last_offered = offered or self._last_offered
            auto = self._values["input.qos.reliability"] == "auto"
            if auto and qos.input_reliability("auto", offered) != self._input_reliability:
                self.subscribe_input()

    @property
    def input_reliability(self) -> str:
        """The reliability the input subscription uses now (`auto` resolved)."""
        return self._input_reliability

    def configure_vins(self) -> None:
        enabled = self._values["output.vins_layout"] != "none"
        if enabled and self.vins_pub is None:
            out_qos = qos.profile(self._values["output.qos.reliability"], self._values["output.qos.depth"])
            self.vins_pub = self.node.create_publisher(PointCloud, self.topic("features_vins"), out_qos)
            self.camera_info_sub = self.node.create_subscription(
                CameraInfo, self.topic("camera_info"), self._on_camera_info, 10
            )
        elif not enabled and self.camera_info_sub is not None:
            # The publisher stays: the worker may be publishing on it right now; it just stops being used.
            self.node.destroy_subscription(self.camera_info_sub)
            self.camera_info_sub = None

    def _on_image(self, msg: ImageMessage, info: MessageInfo) -> None:
        self.stats.on_received(self.node.get_clock().now().nanoseconds)
        self.count_missed(info)
        if self.deliver(msg):
            self.stats.on_dropped("superseded")

    def count_missed(self, info: MessageInfo) -> None:
        if missed := self._gaps.missed(info, self._publisher_count):
            self.stats.on_dropped("missed", count=missed)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            self.camera = CameraModel(msg)
        except ValueError as exc:
            self.camera = None
            self._logger.warning(f"{self.label}: ignoring camera_info: {exc}", throttle_duration_sec=10.0)

    # ---------------------------------------------------------------- frames (the node's worker thread)

    def convert(self, msg: ImageMessage) -> Converted | None:
        """The frame's pixels; None (a counted drop) when the message does not hold a usable image."""
        start = time.perf_counter()
        try:
            pixels, color = compressed_to_array(msg) if isinstance(msg, CompressedImage) else image_to_array(msg)
        except ValueError as exc:
            self._drop_bad_input(exc)
            return None
        return Converted(pixels, color, (time.perf_counter() - start) * 1e3)

    def process(
        self, msg: ImageMessage, converted: Converted | None = None, features: Features | None = None
    ) -> Processed | None:
        """One frame: convert, extract and track, publish, and count it; bad input and model failures are counted
        drops (None), never exceptions. `converted` and `features`: the frame's, when a batch made them."""
        converted = converted or self.convert(msg)
        if converted is None:
            return None
        pixels, color = converted.pixels, converted.color
        stages: dict[str, float] = {"conversion": converted.milliseconds}
        stamp = Time.from_msg(msg.header.stamp)
        try:
            result = self.pipeline(pixels, color, stamp.nanoseconds, features)  # read once: a reload may swap it
        except ValueError as exc:  # the image itself is unusable (e.g. too large for the extractor)
            self._drop_bad_input(exc)
            return None
        except Exception as exc:  # a model failure (e.g. out of memory) must not stop the node
            self.stats.on_dropped("model_failure", repr(exc))
            self._logger.error(f"{self.label}: model failed on a frame: {exc!r}", throttle_duration_sec=5.0)
            return None
        if result.reset:
            self._logger.info(f"{self.label}: restarting tracks: {result.reset} (a bag looped, or another camera?)")
        stages.update(result.timings)

        start = time.perf_counter()
        self._publish(msg, pixels, color, result)
        stages["publishing"] = (time.perf_counter() - start) * 1e3
        now = self.node.get_clock().now()
        self.stats.on_processed(now.nanoseconds, stages, (now - stamp).nanoseconds / 1e6, result.tracked.fallback)
        return Processed(result, pixels, color)

    def _drop_bad_input(self, exc: ValueError) -> None:
        self.stats.on_dropped("bad_input", str(exc))
        self._logger.warning(f"{self.label}: dropping bad image: {exc}", throttle_duration_sec=5.0)

    def _publish(self, msg: ImageMessage, pixels: np.ndarray, color: str, result: FrameResult) -> None:
        header, tracked = msg.header, result.tracked
        self.features_pub.publish(encode_features(header, tracked, self._values["output.descriptor_type"]))
        if self._values["matching.enabled"]:
            self.matches_pub.publish(encode_matches(header, result.previous_stamp_ns, tracked))
        if self._values["debug_image.enabled"] and self.debug_pub.get_subscription_count() > 0:
            drawn = draw_tracks(to_bgr8(pixels, color), tracked)
            self.debug_pub.publish(array_to_image(drawn, "bgr8", header))
        layout = self._values["output.vins_layout"]
        if layout != "none" and not (layout == "vins_fusion" and self.in_stereo_pair):  # the pair publishes those
            self._publish_vins(header, result)

    def _publish_vins(self, header: Header, result: FrameResult) -> None:
        camera = self.camera
        if camera is None:
            self._logger.warning(
                f"{self.label}: features_vins needs camera_info; none received yet", throttle_duration_sec=10.0
            )
            return
        layout, dt = self._values["output.vins_layout"], result.seconds_since_previous
        try:
            self.vins_pub.publish(encode_vins(header, result.tracked, layout, camera, dt))
        except ValueError as exc:
            self._logger.warning(f"{self.label}: features_vins skipped: {exc}", throttle_duration_sec=10.0)

    # ---------------------------------------------------------------- settings and figures

    def apply(self, values: dict[str, Any], changed: set[str], pipeline: FramePipeline) -> None:
        """Make `values` current, with `pipeline` (a new one after a model change, else the same reconfigured)."""
        self.pipeline, self._values = pipeline, values
        if changed & parameter_table.INPUT_KEYS:
            self.subscribe_input()
        if "output.vins_layout" in changed:
            self.configure_vins()
        if "diagnostics.window" in changed:
            self.stats.resize(values["diagnostics.window"])

    def statistics(self) -> Snapshot:
        """The figures /diagnostics reports for this camera, with level and message, at this instant."""
        now = self.node.get_clock().now().nanoseconds
        offered = self.offered_reliability()
        snap = assess(
            self.stats.snapshot(now),
            budget_ms=self._values["diagnostics.latency_budget_ms"],
            stale_s=self.stats.stale_seconds(now),
            stale_timeout=self._values["diagnostics.stale_timeout"],
            publishers=len(offered),
            cause=transport_cause(self._input_reliability, offered or self._last_offered, self._camera_setting),
        )
        snap.extra = {
            "model": self._values["model"],
            "input_topic": self.image_sub.topic_name,
            "input.qos.reliability": self._input_reliability,
            "input.publishers": ", ".join(offered),
            "fastdds.profile": self._profile_in_effect,
            "fastdds.camera_setting": self._camera_setting,
            **self.extra(),
        }
        return snap

    def status(self) -> DiagnosticStatus:
        """This camera's /diagnostics entry; its figures restart their period."""
        snap = self.statistics()
        self.stats.start_period()
        return to_status(snap, f"{self.label}: alike extractor", str(self.pipeline.extractor.device))
