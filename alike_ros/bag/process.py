"""Offline processing: every image of a bag through the extractor and tracker, into a new bag.

The output holds every input topic unchanged plus, per camera namespace NS, `NS/features` and
`NS/matches` (the node's PointCloud2 layouts, same encoders) and optionally `NS/debug_image`. Each output
message copies its image's header and is written at the image's bag timestamp. Nothing is dropped; an
image that cannot be used (bad encoding, inconsistent size, undecodable) is skipped and counted.

Stereo pairs (LEFT:RIGHT namespaces) are paired by stamp as in the node (`stereo.max_skew`) and matched left to
right (`ros.stereo.match_pair`, with the geometry of the pair's `NS/camera_info` topics when the bag has them) into
`LEFT/stereo_matches`, written at the bag timestamp of the frame that completed the pair; frames that never pair are
counted as unpaired. On CUDA the frames of several cameras (one each, in bag order) go through the network as one
batch, as the node batches its cameras' frames; outputs are written in the input's order either way.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from builtin_interfaces.msg import Time
from rclpy.serialization import deserialize_message
from rosbags.interfaces import Connection
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header
from tqdm import tqdm

from ..drawing import draw_tracks
from ..features import Color, Features
from ..latency import LatencySummary
from ..monitoring import timed_ms
from ..overlap import WriteBehind, read_ahead
from ..parameter_table import Settings, camera_values, pipeline_config, stereo_config
from ..pipeline import FramePipeline, batch_pays, extract_in_batches
from ..ros.conversions import array_to_image, compressed_to_array, image_to_array, to_bgr8, to_grey8
from ..ros.messages import encode_features, encode_matches, encode_stereo_matches
from ..ros.stereo import LEFT, RIGHT, StampPairing, StereoGeometry, match_pair
from .storage import READ_ERRORS, BagError, BagWriter, open_bag, storage_of, write_bag

IMAGE_TYPES = {"sensor_msgs/msg/Image": Image, "sensor_msgs/msg/CompressedImage": CompressedImage}
OUTPUTS = ("features", "matches", "debug_image")
STEREO_OUTPUT = "stereo_matches"
OUTPUT_TYPES = {
    "features": "sensor_msgs/msg/PointCloud2",
    "matches": "sensor_msgs/msg/PointCloud2",
    "debug_image": "sensor_msgs/msg/Image",
    STEREO_OUTPUT: "sensor_msgs/msg/PointCloud2",
}
IMAGE_NAMES = {"image", "image_raw", "image_rect", "image_color", "image_rect_color", "image_mono", "image_rect_raw"}


def base_topic(topic: str) -> str:
    """The raw image topic a transport topic belongs to: `/cam/image_raw/compressed` -> `/cam/image_raw`."""
    return topic.removesuffix("/compressed")


def camera_namespaces(topics: list[str]) -> dict[str, str]:
    """Image topic -> output namespace: the parent of `NS/image*` topics, else the topic itself
    (`/stereo/left` -> `/stereo/left`), so that no two cameras share their outputs."""
    namespaces = {}
    for topic in topics:
        base = PurePosixPath(base_topic(topic))
        namespaces[topic] = str(base.parent) if base.name in IMAGE_NAMES else str(base)
    for ns, count in Counter(namespaces.values()).items():
        if count > 1:
            raise BagError(f"image topics {sorted(t for t in topics if namespaces[t] == ns)} share namespace {ns}")
    return {t: ns.rstrip("/") for t, ns in namespaces.items()}


def output_topic(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def select_image_topics(connections: list, requested: list[str]) -> list[str]:
    """The requested topics (checked), or every image topic except debug outputs and the compressed twin
    of a raw topic that is also present."""
    types = {c.topic: c.msgtype for c in connections}
    if requested:
        for topic in requested:
            if topic not in types:
                raise BagError(f"image topic {topic} is not in the bag (topics: {', '.join(sorted(types))})")
            if types[topic] not in IMAGE_TYPES:
                raise BagError(f"topic {topic} has type {types[topic]}, not sensor_msgs Image or CompressedImage")
        return list(dict.fromkeys(requested))
    topics = [t for t, ty in types.items() if ty in IMAGE_TYPES and not t.endswith("/debug_image")]
    return sorted(t for t in topics if not (t.endswith("/compressed") and base_topic(t) in topics))


def namespace_pairs(pairs: list[str], namespaces: list[str]) -> list[tuple[str, str]]:
    """`--stereo` values (LEFT:RIGHT camera namespaces, leading slash optional) as (left, right) namespaces of the
    bag; BagError names a pair that is not two different cameras of the bag, or a camera in two pairs."""
    found, used = [], []
    for entry in pairs:
        left, right = ("/" + part.strip().strip("/") for part in entry.partition(":")[::2])
        if ":" not in entry or left == right or "/" in (left, right):
            raise BagError(f"stereo pair {entry!r} is not LEFT:RIGHT, two different camera namespaces")
        if unknown := [ns for ns in (left, right) if ns not in namespaces]:
            raise BagError(f"stereo pair {entry!r}: {', '.join(unknown)} not among the cameras {', '.join(namespaces)}")
        found.append((left, right))
        used += [left, right]
    if twice := sorted({ns for ns in used if used.count(ns) > 1}):
        raise BagError(f"stereo pairs: {', '.join(twice)} in more than one pair")
    return found


@dataclass
class Decoded:
    """An image message's pixels."""

    image: np.ndarray
    color: Color
    conversion_ms: float


@dataclass
class ProcessedFrame:
    """One image through its camera: the messages to write and what its stereo pair needs."""

    header: Header
    features: Features
    grey: np.ndarray | None  # 8-bit, for stereo refinement (None: not in a pair)
    outputs: dict[str, Any]


@dataclass
class Camera:
    """Per image topic: output namespace, tracker and counts."""

    topic: str
    namespace: str
    pipeline: FramePipeline
    stereo: bool = False  # in a stereo pair: keep its grey image
    frames: int = 0
    processed: int = 0
    skipped: Counter = field(default_factory=Counter)
    resets: Counter = field(default_factory=Counter)
    guided_fallbacks: int = 0
    timings: dict[str, list[float]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "image_topic": self.topic,
            "frames": self.frames,
            "processed": self.processed,
            "skipped": dict(self.skipped),
            "tracker_resets": dict(self.resets),
            "guided_fallbacks": self.guided_fallbacks,
            "timings_ms": timing_stats(self.timings),
        }


def timing_stats(timings: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """mean, p50 and p95 of each stage's milliseconds."""
    stats = {stage: LatencySummary.of(values) for stage, values in timings.items()}
    return {stage: {"mean": s.mean, "p50": s.p50, "p95": s.p95} for stage, s in stats.items()}


@dataclass
class StereoPair:
    """Two cameras' frames paired by stamp and matched left to right (see the module's text)."""

    left: Camera
    right: Camera
    settings: Settings
    infos: list[CameraInfo | None] = field(default_factory=lambda: [None, None])
    pairs: int = 0
    unpaired: list[int] = field(default_factory=lambda: [0, 0])
    matches: list[int] = field(default_factory=list)
    timings: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.left.stereo = self.right.stereo = True
        self.config = stereo_config(self.settings.values)
        self._pairing: StampPairing[ProcessedFrame] = StampPairing(round(self.settings.values["stereo.max_skew"] * 1e9))

    @property
    def geometry(self) -> StereoGeometry:
        return StereoGeometry.from_camera_infos(*self.infos, self.config.right_pose)

    def offer(self, side: int, frame: ProcessedFrame) -> Any | None:
        """A processed frame of one side: the `stereo_matches` message of the pair it completes, or None."""
        pair, given_up = self._pairing.add(side, _stamp_ns(frame.header.stamp), frame)
        self.unpaired = [a + b for a, b in zip(self.unpaired, given_up, strict=True)]
        if pair is None:
            return None
        left, right, _, right_stamp = pair
        start = time.perf_counter()
        matcher = self.left.pipeline.config.matcher
        found, depth = match_pair(
            left.features, right.features, (left.grey, right.grey), self.geometry, matcher, self.config
        )
        self.timings.setdefault("stereo", []).append((time.perf_counter() - start) * 1e3)
        self.pairs += 1
        self.matches.append(len(found))
        return encode_stereo_matches(left.header, right_stamp, left.features, right.features, found, depth)

    def summary(self) -> dict[str, Any]:
        waiting = self._pairing.waiting()
        return {
            "right": self.right.namespace,
            "pairs": self.pairs,
            "unpaired": {
                cam.namespace: given + left
                for cam, given, left in zip((self.left, self.right), self.unpaired, waiting, strict=True)
            },  # fmt: skip
            "geometry": self.geometry.note,
            "matches_mean": float(np.mean(self.matches)) if self.matches else 0.0,
            "timings_ms": timing_stats(self.timings),
        }


def read_messages(
    inp: str | Path, image_topics: set[str], read_ms: list[float]
) -> Iterator[tuple[Connection, int, bytes, Image | CompressedImage | Exception | None]]:
    """The bag's messages in order, those of `image_topics` deserialised (or the reason they do not deserialise), the
    time each took appended to `read_ms`; meant for a reading thread (`overlap.read_ahead`), which opens the bag."""
    with open_bag(inp) as reader:
        messages = reader.messages()
        while True:
            start = time.perf_counter()
            try:
                conn, timestamp, raw = next(messages)
            except StopIteration:
                return
            msg = None
            if conn.topic in image_topics:
                try:
                    msg = deserialize_message(raw, IMAGE_TYPES[conn.msgtype])
                except Exception as exc:  # rclpy raises bare RuntimeErrors/ValueErrors for bad CDR
                    msg = exc
            read_ms.append((time.perf_counter() - start) * 1e3)  # per message: the end of the bag is not one
            yield conn, timestamp, raw, msg


def _stamp_ns(stamp: Time) -> int:
    return stamp.sec * 10**9 + stamp.nanosec


class Processor:
    """Runs one extractor over the frames of several cameras, each with its own tracker."""

    def __init__(self, settings: Settings, debug_image: bool):
        self.settings = settings
        self.config = settings.pipeline
        self.debug_image = debug_image
        self._first: FramePipeline | None = None

    def camera(self, topic: str, namespace: str) -> Camera:
        """A camera's own settings apply as in the node (`left.input.mask` for namespace /left), on the one model."""
        config = pipeline_config(camera_values(self.settings.values, namespace.lstrip("/")))
        pipeline = FramePipeline(config, self._first.extractor if self._first else None)
        self._first = self._first or pipeline
        return Camera(topic, namespace, pipeline)

    def decode(self, cam: Camera, msg: Image | CompressedImage | Exception, index: int) -> Decoded | None:
        """Message `index` of the bag (1-based) as its camera's pixels; None, counted and named, when it has none (an
        exception in place of the message is the reason it did not deserialise)."""
        cam.frames += 1
        if isinstance(msg, Exception):
            cam.skipped["bad message"] += 1
            tqdm.write(f"warning: {cam.topic}: message {index} does not deserialise: {msg}")
            return None
        start = time.perf_counter()
        try:
            image, color = compressed_to_array(msg) if isinstance(msg, CompressedImage) else image_to_array(msg)
        except ValueError as exc:
            return self._skip(cam, msg, exc)
        return Decoded(image, color, (time.perf_counter() - start) * 1e3)

    @staticmethod
    def _skip(cam: Camera, msg: Image | CompressedImage, exc: ValueError) -> None:
        cam.skipped["bad image"] += 1
        tqdm.write(f"warning: {cam.topic}: skipped frame at {_stamp_ns(msg.header.stamp)} ns: {exc}")

    def __call__(
        self, cam: Camera, msg: Image | CompressedImage, decoded: Decoded, features: Features | None = None
    ) -> ProcessedFrame | None:
        """One decoded image through its camera (`features`: already extracted, in a batch): its output messages by
        name (features, matches, debug_image) and what a stereo pair needs; None when it is skipped."""
        image, color = decoded.image, decoded.color
        try:
            result = cam.pipeline(image, color, _stamp_ns(msg.header.stamp), features)
        except ValueError as exc:
            return self._skip(cam, msg, exc)
        if result.reset:
            cam.resets[result.reset] += 1
        frame = result.tracked
        cam.guided_fallbacks += frame.fallback
        out = {"features": encode_features(msg.header, frame, self.settings.values["output.descriptor_type"])}
        if self.config.matching:
            out["matches"] = encode_matches(msg.header, result.previous_stamp_ns, frame)
        if self.debug_image:
            out["debug_image"] = array_to_image(draw_tracks(to_bgr8(image, color), frame), "bgr8", msg.header)
        for stage, ms in {"conversion": decoded.conversion_ms, **result.timings}.items():
            cam.timings.setdefault(stage, []).append(ms)
        cam.processed += 1
        grey = to_grey8(image, color) if cam.stereo else None
        return ProcessedFrame(msg.header, frame.features, grey, out)


def process_bag(
    inp: str | Path,
    out: str | Path,
    settings: Settings,
    image_topics: list[str] | None = None,
    debug_image: bool = False,
    storage: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    stereo: list[str] | None = None,
) -> dict[str, Any]:
    """Process `inp` into `out` (same storage format unless given); `stereo`: LEFT:RIGHT camera namespaces. Returns
    the summary also stored in the output bag's metadata under `alike_ros.process`."""
    summary: dict[str, Any] = {
        "input": str(inp), "settings": settings.values, "cameras": {}, "stereo": {}, "skipped_topics": {}
    }  # fmt: skip
    with open_bag(inp) as reader:
        topics = select_image_topics(reader.connections, image_topics or [])
        if not topics:
            raise BagError(f"{inp} has no sensor_msgs/Image or CompressedImage topic")
        namespaces = camera_namespaces(topics)
        pairs = namespace_pairs(stereo or [], list(namespaces.values()))
        processor = Processor(settings, debug_image)  # after the checks of the bag: loading a model takes time
        cameras = {t: processor.camera(t, ns) for t, ns in namespaces.items()}
        by_namespace = {c.namespace: c for c in cameras.values()}
        rigs = [StereoPair(by_namespace[left], by_namespace[right], settings) for left, right in pairs]
        sides = {rig.left.topic: (rig, LEFT) for rig in rigs} | {rig.right.topic: (rig, RIGHT) for rig in rigs}
        infos = {output_topic(cam.namespace, "camera_info"): (rig, side) for rig in rigs
                 for cam, side in ((rig.left, LEFT), (rig.right, RIGHT))}  # fmt: skip
        names = OUTPUTS if debug_image else OUTPUTS[:2]
        names = names if settings.pipeline.matching else tuple(n for n in names if n != "matches")
        output_types = {output_topic(c.namespace, n): OUTPUT_TYPES[n] for c in cameras.values() for n in names}
        output_types |= {output_topic(rig.left.namespace, STEREO_OUTPUT): OUTPUT_TYPES[STEREO_OUTPUT] for rig in rigs}
        if clash := output_types.keys() & {c.topic for c in reader.connections}:
            raise BagError(f"{inp} already has output topics {sorted(clash)}; process the unprocessed bag")
        io: dict[str, list[float]] = {"read": [], "write": []}
        targets: dict[int, Any] = {}  # input connection id -> output connection; filled by the writing thread

        def start_output(bag: BagWriter) -> None:
            copied: dict[tuple[str, str], Any] = {}
            for conn in reader.connections:
                key = (conn.topic, conn.msgtype)
                try:
                    targets[conn.id] = copied[key] if key in copied else bag.copy_connection(conn)
                    copied[key] = targets[conn.id]
                except BagError as exc:
                    summary["skipped_topics"][conn.topic] = str(exc)
                    tqdm.write(f"warning: not copied: {exc}")
            for topic, msgtype in output_types.items():
                bag.add_topic(topic, msgtype)

        def write(messages: list[tuple[int | str, int, Any]], bag: BagWriter) -> None:
            """Input messages by connection id (unless not copied), outputs by topic, in order."""
            with timed_ms(io["write"]):
                for target, timestamp, message in messages:
                    if isinstance(target, str) or target in targets:
                        bag.write(target if isinstance(target, str) else targets[target], timestamp, message)

        def outputs(
            topic: str, timestamp: int, msg: Any, decoded: Decoded | None, features: Features | None
        ) -> list[tuple[int | str, int, Any]]:
            """A decoded image message through its camera (and its stereo pair): the messages to write, by topic."""
            cam = cameras[topic]
            if decoded is None or (frame := processor(cam, msg, decoded, features)) is None:
                return []
            found = [(output_topic(cam.namespace, name), timestamp, m) for name, m in frame.outputs.items()]
            if topic in sides and (matches := sides[topic][0].offer(sides[topic][1], frame)) is not None:
                found.append((output_topic(sides[topic][0].left.namespace, STEREO_OUTPUT), timestamp, matches))
            return found

        def finish(_: BagWriter) -> None:  # after every write, before the bag is closed with the summary in it
            summary["cameras"] = {c.namespace or "/": c.summary() for c in cameras.values()}
            summary["stereo"] = {rig.left.namespace: rig.summary() for rig in rigs}
            summary["io_timings_ms"] = timing_stats(io)
            frames = sum(c.frames for c in cameras.values())
            summary["ms_per_frame"] = (time.perf_counter() - start) * 1e3 / frames if frames else 0.0

        start = time.perf_counter()
        custom_data = {"alike_ros.process": summary}
        with WriteBehind(lambda: write_bag(out, storage or storage_of(inp), overwrite, custom_data)) as behind:
            behind.submit(start_output)
            messages = read_ahead(partial(read_messages, inp, set(cameras), io["read"]))
            pending: list[tuple[Connection, int, bytes, Any, int]] = []  # in bag order, up to one image per camera

            def flush() -> None:
                """The pending messages in order, their images (one per camera) through the network as one batch where
                that pays (`pipeline.batch_pays`: CUDA), as the node batches its cameras' frames."""
                images = [i for i, (conn, *_) in enumerate(pending) if conn.topic in cameras]
                decoded = {
                    i: processor.decode(cameras[pending[i][0].topic], pending[i][3], pending[i][4]) for i in images
                }
                found = extract_in_batches(
                    [cameras[pending[i][0].topic].pipeline for i in images],
                    [(d.image, d.color) if (d := decoded[i]) else None for i in images],
                )
                features = dict(zip(images, found, strict=True))
                for i, (conn, timestamp, raw, msg, _) in enumerate(pending):
                    writes: list[tuple[int | str, int, Any]] = [(conn.id, timestamp, raw)]
                    if conn.topic in infos and conn.msgtype == "sensor_msgs/msg/CameraInfo":
                        rig, side = infos[conn.topic]
                        rig.infos[side] = deserialize_message(raw, CameraInfo)
                    if conn.topic in cameras:
                        writes += outputs(conn.topic, timestamp, msg, decoded[i], features[i])
                    behind.submit(partial(write, writes))
                pending.clear()

            batching = len(cameras) > 1 and batch_pays(next(iter(cameras.values())).pipeline.extractor)
            index = 0
            with tqdm(total=reader.message_count, unit="msg", desc="process", disable=not progress) as bar:
                while True:
                    try:
                        item = next(messages)
                    except StopIteration:
                        break
                    except READ_ERRORS as exc:
                        raise BagError(f"{inp} is damaged: reading message {index + 1} failed: {exc}") from exc
                    index += 1
                    bar.update()
                    if item[0].topic in {conn.topic for conn, *_ in pending if conn.topic in cameras}:
                        flush()  # a camera's next frame waits for its previous one
                    pending.append((*item, index))
                    if not batching or sum(conn.topic in cameras for conn, *_ in pending) == len(cameras):
                        flush()
            flush()
            behind.submit(finish)
    return summary
