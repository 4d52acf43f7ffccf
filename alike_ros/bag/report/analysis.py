"""Reading a processed bag into per-camera statistics (`analyse`): counts, keypoints, matches, tracks, accuracy
against ground truth, per-frame latency, the marks the video draws, and the node's recorded diagnostics. See the
package's text for what is measured."""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CompressedImage, Image, PointCloud2

from ...geometry import warp_points
from ...latency import LatencySummary
from ...ros.messages import decode_features, decode_matches
from ..storage import READ_ERRORS, BagError, open_bag, read_custom_data
from ..truth import read_truth, stamp_ns

IMAGE_TYPES = {"sensor_msgs/msg/Image": Image, "sensor_msgs/msg/CompressedImage": CompressedImage}
MIN_TRACK = 3  # frames a track must have been seen in to count as "tracked" (plot) and to be drawn (video)
MAX_MARKS = 200  # tracks drawn per video frame: the best-scored one of each grid cell, best-scored cells first
MARK_CELLS = 16  # grid cells across the longer image side, at most one drawn track each (spreads the marks)
TAIL = 3  # positions of a track drawn as its tail (the current one included)


@dataclass
class FrameStats:
    stamp_ns: int
    keypoints: int = 0
    tracked: int = 0  # keypoints on tracks seen in >= MIN_TRACK frames (this one included)
    matches: int = 0
    mean_track_length: float = 0.0
    correct: int = 0  # matches within the threshold of the ground truth
    median_error: float = float("nan")
    has_truth: bool = False
    processed: bool = False  # features were recorded for it
    latency_ms: float = float("nan")  # wall-clock end to end, where the recording measures it


@dataclass
class Marks:
    """What the video draws on one frame: the tails (k x 2 pixel positions, oldest first) of the chosen tracks."""

    tails: list[np.ndarray]
    lengths: np.ndarray


@dataclass
class CameraReport:
    namespace: str
    frames: dict[int, FrameStats] = field(default_factory=dict)  # by header stamp
    track_seen: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    errors: list[np.ndarray] = field(default_factory=list)
    image_topic: str | None = None  # NS's input images in BAG
    images: dict[int, int] = field(default_factory=dict)  # header stamp -> bag timestamp, NS's images in BAG
    images_source: str = ""  # where the image count comes from ("" when no image topic was found)
    features_time: dict[int, int] = field(default_factory=dict)  # header stamp -> bag timestamp of features
    latency_note: str = ""  # why no per-frame latency was measured
    truth_note: str = ""  # why there is no accuracy
    marks: dict[int, Marks] = field(default_factory=dict)  # by header stamp, with video=True
    video: list[np.ndarray] = field(default_factory=list)

    def ordered(self) -> list[FrameStats]:
        """Frames with features, in header-stamp order."""
        return [self.frames[k] for k in sorted(self.frames) if self.frames[k].processed]

    def latencies(self) -> np.ndarray:
        """Per-frame wall-clock latencies in stamp order (NaN-free), empty when not measured."""
        values = np.array([f.latency_ms for f in self.ordered()], np.float64)
        return values[~np.isnan(values)]

    def summary(self, threshold: float) -> dict[str, Any]:
        frames = self.ordered()
        kps = np.array([f.keypoints for f in frames])
        tracked = np.array([f.tracked for f in frames])
        matches = np.array([f.matches for f in frames])
        lengths = np.array(list(self.track_seen.values()))
        out: dict[str, Any] = {
            "frames": len(frames),
            "images": len(self.images) if self.images_source else None,
            "images_source": self.images_source or None,
            "dropped": len(set(self.images) - {f.stamp_ns for f in frames}) if self.images_source else None,
            "keypoints_mean": float(kps.mean()) if len(kps) else 0.0,
            "keypoints_min": int(kps.min()) if len(kps) else 0,
            f"keypoints_on_tracks_min{MIN_TRACK}_mean": float(tracked.mean()) if len(tracked) else 0.0,
            "matches_mean": float(matches[1:].mean()) if len(matches) > 1 else 0.0,
            "tracks": len(lengths),
            "track_length_mean": float(lengths.mean()) if len(lengths) else 0.0,
            "track_length_max": int(lengths.max()) if len(lengths) else 0,
        }
        checked = [f for f in frames if f.has_truth]
        if checked:
            errors = np.concatenate(self.errors) if self.errors else np.zeros(0)
            out["ground_truth_frames"] = len(checked)
            out[f"accuracy_{threshold:g}px"] = float(np.mean(errors < threshold)) if len(errors) else float("nan")
            out["median_error_px"] = float(np.median(errors)) if len(errors) else float("nan")
        latencies = self.latencies()
        if len(latencies):
            out["latency_ms"] = latency_summary(latencies)
        return out


def latency_summary(values: np.ndarray) -> dict[str, Any]:
    """The first frame (cold start) apart from the steady state (all later frames), wall-clock ms."""
    rest = LatencySummary.of(values[1:])
    steady = (
        {"frames": rest.count, "mean": rest.mean, "p50": rest.p50, "p95": rest.p95, "max": rest.max}
        if rest.count
        else None
    )
    return {
        "clock": "wall",
        "measured": "image received -> features received",
        "first_frame": float(values[0]),
        "steady": steady,
    }


def image_topic(connections, namespace: str, preferred: str | None = None) -> str | None:
    """NS's input image topic among the connections (`NS/image_raw`, `NS/image_raw/compressed`, the topic
    NS itself, ...): `preferred` when present, else a raw one before a compressed one."""
    topics = {c.topic for c in connections if c.msgtype in IMAGE_TYPES and c.topic != f"{namespace}/debug_image"}
    if preferred in topics:
        return preferred
    mine = [t for t in topics if t == namespace or t.removesuffix("/compressed").rpartition("/")[0] == namespace]
    return min(mine, key=lambda t: (t.endswith("/compressed"), t), default=None)


def message_stamps(reader, topic: str) -> dict[int, int]:
    """Header stamp -> bag timestamp of every message on an image topic."""
    conns = [c for c in reader.connections if c.topic == topic]
    stamps = {}
    for conn, timestamp, raw in reader.messages(conns) if conns else ():  # no connection means no filter
        header = deserialize_message(raw, IMAGE_TYPES[conn.msgtype]).header
        stamps[stamp_ns(header.stamp.sec, header.stamp.nanosec)] = timestamp
    return stamps


def match_errors(rows: np.ndarray, H0: np.ndarray, H1: np.ndarray) -> np.ndarray:
    """Pixel distance between each match's x1 and its x0 carried into frame 1 by the ground truth."""
    x0 = np.stack((rows["x0"], rows["y0"]), axis=1).astype(np.float64)
    projected = warp_points(H1 @ np.linalg.inv(H0), x0)
    x1 = np.stack((rows["x1"], rows["y1"]), axis=1)
    return np.linalg.norm(projected - x1, axis=1)


def analyse(
    path: Path, ground_truth: Path | None = None, threshold: float = 3.0, video: bool = False
) -> dict[str, CameraReport]:
    """CameraReports by namespace; `video` also keeps what `render_video` draws on each frame."""
    process = read_custom_data(path).get("alike_ros.process", {}).get("cameras", {})
    with open_bag(path) as reader:
        namespaces = sorted(
            c.topic.removesuffix("/features")
            for c in reader.connections
            if c.topic.endswith("/features") and c.msgtype == "sensor_msgs/msg/PointCloud2"
        )
        if not namespaces:
            raise BagError(f"{path} has no NS/features topic: process it first (bag process)")
        reports = {ns: CameraReport(ns) for ns in namespaces}
        for ns, report in reports.items():
            report.image_topic = image_topic(reader.connections, ns, process.get(ns or "/", {}).get("image_topic"))
            if report.image_topic:
                report.images, report.images_source = message_stamps(reader, report.image_topic), str(path)
    truth, note = read_truth(ground_truth or path, namespaces)
    reference_times: dict[str, dict[int, int]] = {}  # the images' bag timestamps in the ground-truth bag
    if ground_truth is not None:
        with open_bag(ground_truth) as reader:
            for ns, report in reports.items():
                if topic := image_topic(reader.connections, ns, report.image_topic):
                    reference_times[ns] = message_stamps(reader, topic)
                    if not report.images_source:
                        report.images, report.images_source = reference_times[ns], str(ground_truth)
    for report in reports.values():
        report.truth_note = note
    roles = {f"{ns}/{name}": (ns, name) for ns in namespaces for name in ("features", "matches", "debug_image")}
    tails: dict[str, dict[int, deque]] = {ns: {} for ns in namespaces}
    with open_bag(path) as reader:
        conns = [c for c in reader.connections if c.topic in roles]
        try:
            for conn, timestamp, raw in reader.messages(conns):
                ns, name = roles[conn.topic]
                if name == "debug_image":
                    continue  # drawn from the images themselves by render_video
                report = reports[ns]
                msg = deserialize_message(raw, PointCloud2)
                stamp = stamp_ns(msg.header.stamp.sec, msg.header.stamp.nanosec)
                frame = report.frames.setdefault(stamp, FrameStats(stamp))
                if name == "features":
                    feats = decode_features(msg)
                    frame.processed = True
                    report.features_time[stamp] = timestamp
                    frame.keypoints = len(feats.keypoints)
                    ids = feats.track_ids.tolist()
                    for track in ids:
                        report.track_seen[track] += 1
                    seen = np.array([report.track_seen[t] for t in ids], np.int64)
                    frame.mean_track_length = float(seen.mean()) if len(seen) else 0.0
                    frame.tracked = int((seen >= MIN_TRACK).sum())
                    # a track lives on consecutive frames only, so the tails of the tracks of this frame suffice
                    previous, current = tails[ns], {}
                    for track, point in zip(ids, feats.keypoints, strict=True):
                        current[track] = previous.get(track) or deque(maxlen=TAIL)
                        current[track].append(point)
                    tails[ns] = current
                    if video:
                        chosen = choose_marks(feats.keypoints, feats.scores, seen)
                        report.marks[stamp] = Marks([np.array(current[ids[i]]) for i in chosen], seen[chosen])
                else:
                    rows = decode_matches(msg)
                    frame.matches = len(rows)
                    H1 = truth[ns].get(stamp)
                    H0 = (
                        truth[ns].get(stamp_ns(rows["stamp0_sec"][0], rows["stamp0_nanosec"][0])) if len(rows) else None
                    )
                    if H1 is not None and H0 is not None:
                        errors = match_errors(rows, H0, H1)
                        frame.has_truth, frame.correct = True, int((errors < threshold).sum())
                        frame.median_error = float(np.median(errors))
                        report.errors.append(errors)
        except READ_ERRORS as exc:
            raise BagError(f"{path} is damaged: {exc}") from exc
    for ns, report in reports.items():
        report.frames = {k: f for k, f in report.frames.items() if f.processed}
        measure_latency(report, offline=(ns or "/") in process, reference=reference_times.get(ns, {}))
    return reports


def choose_marks(keypoints: np.ndarray, scores: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Indices of the keypoints the video draws: on tracks of >= MIN_TRACK frames, the best-scored one per grid
    cell (MARK_CELLS across the keypoints' extent), at most MAX_MARKS, best-scored first."""
    candidates = np.flatnonzero(lengths >= MIN_TRACK)
    if not len(candidates):
        return candidates
    candidates = candidates[np.argsort(-scores[candidates], kind="stable")]
    cell = max(float(keypoints[:, 0].max()), float(keypoints[:, 1].max()), 1.0) / MARK_CELLS
    cells = np.floor(keypoints[candidates] / cell).astype(np.int64)
    _, first = np.unique(cells[:, 0] * (MARK_CELLS + 2) + cells[:, 1], return_index=True)
    return candidates[np.sort(first)][:MAX_MARKS]


def measure_latency(report: CameraReport, offline: bool, reference: dict[int, int]) -> None:
    """Per-frame wall-clock latency from the recording times of each image and its features, where the bag
    holds both and they are wall-clock receive times; else `latency_note` says why not."""
    if offline:
        report.latency_note = "offline output: features are written at their image's bag timestamp"
        return
    if not report.image_topic:
        report.latency_note = "the image topic is not in the bag (record it with the features to measure latency)"
        return
    pairs = [(s, t) for s, t in report.images.items() if s in report.features_time]
    if not pairs:
        report.latency_note = "no image of the bag has features"
        return
    # bag time, not wall time: images recorded at their header stamp or at their bag timestamp in the
    # ground-truth bag (`bag replay --clock` records on the replayed bag's clock, held while it waits)
    on_bag_time = sum(t == s or t == reference.get(s) for s, t in pairs)
    deltas = [report.features_time[s] - t for s, t in pairs]
    if 2 * on_bag_time >= len(pairs) or not any(deltas):
        report.latency_note = (
            "the recording times are not wall-clock receive times (offline output, or recorded with --clock)"
        )
        return
    for (stamp, _), delta in zip(pairs, deltas, strict=True):
        report.frames[stamp].latency_ms = delta / 1e6


def node_diagnostics(path: Path) -> dict[str, str]:
    """Key/values of the last /diagnostics status with latency figures (recorded from the live node), or {}."""
    last: dict[str, str] = {}
    with open_bag(path) as reader:
        conns = [c for c in reader.connections if c.topic == "/diagnostics"]
        for _, _, raw in reader.messages(conns) if conns else ():  # no connection means no filter
            for status in deserialize_message(raw, DiagnosticArray).status:
                values = {kv.key: kv.value for kv in status.values}
                if any(k.startswith("latency.") for k in values):
                    last = values
    return last
