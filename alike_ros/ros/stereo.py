"""A stereo pair of the node's cameras: frames paired by stamp, processed together, matched left to right.

The two cameras' subscriptions hand their frames to the pair (not to the inbox): a left and a right frame whose stamps
differ by at most `stereo.max_skew` become one item of the inbox, so the worker always processes the two frames of
one instant together (the newest pair replaces one not yet processed; both frames count as superseded). A frame that
finds no partner while newer ones arrive is counted as `unpaired` on its camera. After both frames went through
their cameras' pipelines (features, tracks, outputs), the pair is matched (`matching.stereo`) and published on
`<left>/stereo_matches`; with `output.vins_layout: vins_fusion`, both cameras' points go out together on
`<left>/features_vins` (right points under the left point's id), as VINS-Fusion's stereo front end publishes them.

The geometry comes from the two cameras' `camera_info` when they are published: rectified when both have R = I and
the same projection intrinsics (P[:3, :3]), with the baseline from the right camera's P[0, 3]; then each match has a
depth. Without camera_info the images are taken to be rectified (the usual `image_rect` input) and depth is NaN.
With camera_info that describes unrectified images, the matches must fit the epipolar geometry of the two cameras'
K and D and the right camera's pose (`stereo.right_pose`), and their depth is triangulated; without the pose,
matching falls back to mutual nearest neighbours without any geometric check or depth. The pair's diagnostics say
which.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, PointCloud2
from std_msgs.msg import Header

from .. import parameter_table
from ..features import Features
from ..matching.matcher import MatcherConfig
from ..matching.stereo import (
    Calibration,
    StereoConfig,
    StereoMatches,
    match_epipolar,
    match_rectified,
    refine,
    right_from_left,
)
from ..pipeline import batch_pays, extract_in_batches
from . import qos
from .conversions import to_grey8
from .messages import encode_stereo_matches
from .vins import encode_vins_stereo

if TYPE_CHECKING:
    from rclpy.node import Node

    from .stream import CameraStream, ImageMessage, Processed

Item = TypeVar("Item")
LEFT, RIGHT = 0, 1


class StampPairing(Generic[Item]):
    """Left and right items paired by stamp: an item waits (up to `keep` per side) for a partner whose stamp is
    within `max_skew_ns`; when one comes, the pair is returned and every older item of either side is given up."""

    def __init__(self, max_skew_ns: int, keep: int = 8):
        self.max_skew_ns = max_skew_ns
        self._waiting: tuple[deque[tuple[int, Item]], deque[tuple[int, Item]]] = (deque(), deque())
        self._keep = keep
        self._lock = threading.Lock()

    def add(self, side: int, stamp_ns: int, item: Item) -> tuple[tuple[Item, Item, int, int] | None, list[int]]:
        """Offer an item of `side` (LEFT or RIGHT). Returns the pair it completes as (left, right, left stamp,
        right stamp), or None, and how many items of each side were given up unpaired."""
        given_up = [0, 0]
        with self._lock:
            others = self._waiting[1 - side]
            match = min(
                (i for i, (stamp, _) in enumerate(others) if abs(stamp - stamp_ns) <= self.max_skew_ns),
                key=lambda i: abs(others[i][0] - stamp_ns),
                default=None,
            )
            if match is None:
                own = self._waiting[side]
                own.append((stamp_ns, item))
                while len(own) > self._keep:
                    own.popleft()
                    given_up[side] += 1
                return None, given_up
            for _ in range(match):  # the partner's older items: too old to pair now
                others.popleft()
                given_up[1 - side] += 1
            other_stamp, other = others.popleft()
            own = self._waiting[side]
            while own and own[0][0] <= stamp_ns:  # this side's older items: their partners are gone
                own.popleft()
                given_up[side] += 1
        if side == LEFT:
            return (item, other, stamp_ns, other_stamp), given_up
        return (other, item, other_stamp, stamp_ns), given_up

    def waiting(self) -> list[int]:
        """How many items of each side wait for a partner."""
        with self._lock:
            return [len(side) for side in self._waiting]


@dataclass(frozen=True)
class StereoGeometry:
    rectified: bool
    fx: float = float("nan")
    baseline: float = float("nan")  # in the unit of the right camera's P[0, 3] / fx (metres by ROS convention)
    note: str = ""  # what the diagnostics say about it
    calibration: Calibration | None = None  # unrectified, with the right camera's pose: the epipolar check

    @classmethod
    def from_camera_infos(
        cls, left: CameraInfo | None, right: CameraInfo | None, right_pose: str = ""
    ) -> StereoGeometry:
        """`right_pose`: `stereo.right_pose`, used for unrectified images only."""
        if left is None or right is None:
            return cls(True, note="no camera_info yet: rows taken as rectified, no depth")
        p_left = np.asarray(left.p, np.float64).reshape(3, 4)
        p_right = np.asarray(right.p, np.float64).reshape(3, 4)
        rotations = [np.asarray(info.r, np.float64).reshape(3, 3) for info in (left, right)]
        if p_left[0, 0] <= 0 or p_right[0, 0] <= 0:
            return cls(True, note="camera_info without a projection (P): rows taken as rectified, no depth")
        same_intrinsics = np.allclose(p_left[:, :3], p_right[:, :3], rtol=1e-6, atol=1e-6)
        if not (same_intrinsics and all(np.allclose(r, np.eye(3), atol=1e-6) for r in rotations)):
            return cls.unrectified(left, right, right_pose)
        baseline = -p_right[0, 3] / p_right[0, 0]
        if baseline <= 0:
            return cls(True, note=f"right camera's P[0, 3] gives baseline {baseline:g}: no depth")
        return cls(True, p_left[0, 0], baseline, f"rectified, fx {p_left[0, 0]:g} px, baseline {baseline:g}")

    @classmethod
    def unrectified(cls, left: CameraInfo, right: CameraInfo, right_pose: str) -> StereoGeometry:
        fallback = "camera_info describes unrectified images: mutual nearest neighbours only"
        if not right_pose:
            return cls(False, note=f"{fallback} (set stereo.right_pose for the epipolar check)")
        models = {left.distortion_model, right.distortion_model}
        if not models <= {"plumb_bob", "rational_polynomial", "equidistant", ""} or len(models) > 1:
            return cls(False, note=f"{fallback} (distortion models {sorted(models)} not handled)")
        K_left, K_right = (np.asarray(info.k, np.float64).reshape(3, 3) for info in (left, right))
        if K_left[0, 0] <= 0 or K_right[0, 0] <= 0:
            return cls(False, note=f"{fallback} (camera_info without intrinsics K)")
        R, t = right_from_left(right_pose)
        fisheye = models == {"equidistant"}
        D_left, D_right = (np.asarray(info.d, np.float64) for info in (left, right))
        calibration = Calibration(K_left, D_left, K_right, D_right, R, t, fisheye)
        return cls(False, calibration=calibration, note="unrectified: epipolar check (camera_info K, D and "
                   "stereo.right_pose), depth triangulated")  # fmt: skip


def match_pair(
    left: Features,
    right: Features,
    greys: tuple[np.ndarray, np.ndarray],
    geometry: StereoGeometry,
    matcher: MatcherConfig,
    config: StereoConfig,
) -> tuple[StereoMatches, np.ndarray | None]:
    """The left-right matches of one pair of frames (8-bit grey `greys`) as its geometry allows, and the depth of each
    (None where the geometry gives none)."""
    if geometry.calibration is not None:
        return match_epipolar(
            left.keypoints, left.descriptors, right.keypoints, right.descriptors, matcher, geometry.calibration,
            config.epipolar_tolerance,
        )  # fmt: skip
    if not geometry.rectified:  # no row or disparity check can be trusted: every pair is a candidate
        config = replace(config, row_tolerance=1e4, min_disparity=-1e4, max_disparity=1e4)
    found = match_rectified(left.keypoints, left.descriptors, right.keypoints, right.descriptors, matcher, config)
    if geometry.rectified:  # refinement searches along the row
        found = refine(*greys, left.keypoints, right.keypoints, found, config)
    depth = found.depth(geometry.fx, geometry.baseline) if np.isfinite(geometry.baseline) else None
    return found, depth


class StereoRig:
    """One pair of the node's cameras (see the module's text)."""

    def __init__(
        self,
        node: Node,
        left: CameraStream,
        right: CameraStream,
        values: dict[str, Any],
        deliver: Callable[[str, tuple[ImageMessage, ImageMessage, int]], bool],
    ):
        """`deliver(name, (left msg, right msg, right stamp ns))` puts a pair in the node's inbox and says whether
        it replaced one not yet processed."""
        self.node, self.left, self.right = node, left, right
        self.name = f"{left.name}:{right.name}"
        self._deliver = deliver
        self._pairing: StampPairing[ImageMessage] = StampPairing(0)
        self._infos: list[CameraInfo | None] = [None, None]
        self.batched = False  # True: batch the two frames on any device (tests; on CUDA they are batched anyway)
        self.apply(values)
        self.pairs_matched = 0
        out_qos = qos.profile(values["output.qos.reliability"], values["output.qos.depth"])
        self.matches_pub = node.create_publisher(PointCloud2, left.topic("stereo_matches"), out_qos)
        for side, stream in ((LEFT, left), (RIGHT, right)):
            node.create_subscription(CameraInfo, stream.topic("camera_info"), self._info_callback(side), 10)

    def _info_callback(self, side: int) -> Callable[[CameraInfo], None]:
        def on_info(msg: CameraInfo) -> None:
            self._infos[side] = msg
            self.geometry = StereoGeometry.from_camera_infos(*self._infos, self._config.right_pose)

        return on_info

    def on_frame(self, side: int, msg: ImageMessage) -> bool:
        """A frame of one of the two cameras (their subscription callbacks call this instead of the inbox)."""
        stamp = Time.from_msg(msg.header.stamp).nanoseconds
        pair, given_up = self._pairing.add(side, stamp, msg)
        for stream, count in zip((self.left, self.right), given_up, strict=True):
            if count:
                stream.stats.on_dropped("unpaired", count=count)
        if pair is not None and self._deliver(self.name, (pair[0], pair[1], pair[3])):
            for stream in (self.left, self.right):
                stream.stats.on_dropped("superseded")
        return False  # superseded frames are counted here, for both cameras

    def apply(self, values: dict[str, Any]) -> None:
        """Make `values` current (the settings are derived here, once per change, not per pair)."""
        self._values, self._config = values, parameter_table.stereo_config(values)
        self._pairing.max_skew_ns = round(values["stereo.max_skew"] * 1e9)
        self.geometry = StereoGeometry.from_camera_infos(*self._infos, self._config.right_pose)

    def process(self, left_msg: ImageMessage, right_msg: ImageMessage, right_stamp_ns: int) -> None:
        """Both frames through their cameras (through the network as one batch where that pays), then left-right
        matching (worker thread)."""
        left, right = self._both(left_msg, right_msg)
        if left is None or right is None:  # counted by the camera that dropped it
            return
        lf, rf = left.result.tracked.features, right.result.tracked.features
        matcher = self.left.pipeline.config.matcher  # the matching.* rules, as the camera's tracks use them
        greys = (to_grey8(left.pixels, left.color), to_grey8(right.pixels, right.color))
        found, depth = match_pair(lf, rf, greys, self.geometry, matcher, self._config)
        self.matches_pub.publish(encode_stereo_matches(left_msg.header, right_stamp_ns, lf, rf, found, depth))
        self.pairs_matched += 1
        if self._values["output.vins_layout"] == "vins_fusion":
            self._publish_vins(left_msg.header, left, right, found.indices)

    def _both(self, left_msg: ImageMessage, right_msg: ImageMessage) -> list[Processed | None]:
        streams, messages = (self.left, self.right), (left_msg, right_msg)
        if not (self.batched or batch_pays(self.left.pipeline.extractor)):
            return [stream.process(msg) for stream, msg in zip(streams, messages, strict=True)]
        converted = [stream.convert(msg) for stream, msg in zip(streams, messages, strict=True)]
        frames = [(c.pixels, c.color) if c else None for c in converted]  # None: counted by its camera
        features = extract_in_batches([stream.pipeline for stream in streams], frames)
        return [
            stream.process(msg, c, f) if c else None
            for stream, msg, c, f in zip(streams, messages, converted, features, strict=True)
        ]

    def _publish_vins(self, header: Header, left: Processed, right: Processed, pairs: np.ndarray) -> None:
        """Both cameras in one `features_vins` message on the left camera's topic (VINS-Fusion's stereo input)."""
        cameras = (self.left.camera, self.right.camera)
        if None in cameras:
            self.node.get_logger().warning(
                f"{self.name}: features_vins needs both cameras' camera_info", throttle_duration_sec=10.0
            )
            return
        dts = (left.result.seconds_since_previous, right.result.seconds_since_previous)
        try:
            msg = encode_vins_stereo(header, left.result.tracked, right.result.tracked, pairs, cameras, dts)
        except ValueError as exc:
            self.node.get_logger().warning(f"{self.name}: features_vins skipped: {exc}", throttle_duration_sec=10.0)
            return
        self.left.vins_pub.publish(msg)

    def extra(self) -> dict[str, str]:
        """What the left camera's /diagnostics status adds about the pair."""
        return {
            "stereo.pair": self.name,
            "stereo.pairs_matched": str(self.pairs_matched),
            "stereo.geometry": self.geometry.note,
        }
