"""Per-frame statistics of a processed bag (offline output or node output recorded by `bag replay --record`).

Cameras are found by their `NS/features` topics. Counts come from the bag itself: the images of NS (its
image topic in BAG, else in `--ground-truth`), the frames with features (processed) and the images without
features (dropped). Ground truth is optional: where `NS/homography` exists (see `bag make-sample`; in the
bag itself or in `--ground-truth BAG`), every match (x0 in frame j, x1 in frame k) is checked against it:
its error is |H_k H_j^-1 x0 - x1| in pixels, with H keyed by the bag timestamp of its frame, which the
sample writes equal to the frame's header stamp. Without it, counts, tracks and timings are reported.

Timings are wall-clock milliseconds. For `bag process` output: the per-stage figures of its metadata. For
a recording of the live node that holds the image topic as well as the features (`bag replay --record`
without `--clock`, so receive times are wall-clock), the end-to-end latency of every frame: from the
image's arrival in the recorder to its features' arrival; the first frame (cold start) is reported apart
from the rest. The node's own `/diagnostics` figures (stage durations, its counts) are added when recorded.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CompressedImage, Image, PointCloud2

from ..drawing import LONG_TRACK, track_colours
from ..geometry import warp_points
from ..monitoring import END_TO_END
from ..ros.conversions import compressed_to_array, image_to_array, to_bgr8
from ..ros.diagnostics import stage_medians
from ..ros.messages import decode_features, decode_matches
from .stereo_report import analyse_stereo, describe_stereo
from .storage import READ_ERRORS, BagError, open_bag, read_custom_data
from .truth import read_truth, stamp_ns

IMAGE_TYPES = {"sensor_msgs/msg/Image": Image, "sensor_msgs/msg/CompressedImage": CompressedImage}
MIN_TRACK = 3  # frames a track must have been seen in to count as "tracked" (plot) and to be drawn (video)
MAX_MARKS = 200  # tracks drawn per video frame: the best-scored one of each grid cell, best-scored cells first
MARK_CELLS = 16  # grid cells across the longer image side, at most one drawn track each (spreads the marks)
TAIL = 3  # positions of a track drawn as its tail (the current one included)
VIDEO_MIN_WIDTH = 640  # smaller frames are upscaled to this width in the video


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
    rest = values[1:]
    steady = (
        {
            "frames": len(rest),
            "mean": float(rest.mean()),
            "p50": float(np.percentile(rest, 50)),
            "p95": float(np.percentile(rest, 95)),
            "max": float(rest.max()),
        }
        if len(rest)
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


def describe_diagnostics(values: dict[str, str], processed: int | None) -> str:
    """The node's own figures: its counts (and whether its last message came before the last frames) and the
    median of each stage. Its end_to_end is left out: it runs from the header stamp on the node clock, which
    under use_sim_time is bag time, held still by a --lockstep replay while the node works."""
    stages = stage_medians(values)
    medians = ", ".join(f"{stage} {ms:.1f}" for stage, ms in stages.items() if stage != END_TO_END)
    counts = (
        f"{values.get('frames.received')} received, {values.get('frames.processed')} processed, "
        f"{values.get('frames.dropped')} dropped"
    )
    behind = ""
    if processed is not None and values.get("frames.processed", "").isdigit():
        missing = processed - int(values["frames.processed"])
        if missing > 0:
            behind = f"; it was published before the last {missing} frame(s)"
    return f"node's last /diagnostics: {counts}{behind}; its stage timings, wall clock, median ms: {medians}"


def describe_latency(lat: dict[str, Any]) -> str:
    text = f"end-to-end latency, wall clock ({lat['measured']}): first frame {lat['first_frame']:.1f} ms (cold start)"
    if steady := lat["steady"]:
        text += (
            f"; the other {steady['frames']} frames: median {steady['p50']:.1f}, p95 {steady['p95']:.1f}, "
            f"max {steady['max']:.1f}, mean {steady['mean']:.1f} ms"
        )
    return text


def describe_offline(timings: dict[str, dict[str, float]], frames: int) -> str:
    """`bag process`'s per-stage figures (its metadata holds them over all frames, not frame by frame)."""
    names = {"total": "extractor total"}
    parts = ", ".join(
        f"{names.get(s, s)} {t['p50']:.1f}/{t['p95']:.1f}"
        for s, t in sorted(timings.items(), key=lambda item: stage_rank(item[0]))
        if {"p50", "p95"} <= set(t)
    )
    return (
        f"timings offline, wall clock, ms per frame (median/p95) over all {frames} frames, the first included: {parts}"
    )


STAGE_ORDER = ("conversion", "preprocess", "preprocessing", "network", "detection", "description", "total", "matching")


def stage_rank(stage: str) -> int:
    return STAGE_ORDER.index(stage) if stage in STAGE_ORDER else len(STAGE_ORDER)


def plot(reports: dict[str, CameraReport], out: Path, stage_timings: dict[str, dict] | None = None) -> None:
    """Write `figure` to `out` (png, pdf, svg, ...)."""
    import matplotlib.pyplot as plt

    fig = figure(reports, stage_timings)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def figure(reports: dict[str, CameraReport], stage_timings: dict[str, dict] | None = None):
    """Per-frame panels (keypoints, matches, accuracy where there is ground truth, track length) and a timing
    panel: per-frame latency where measured, else the per-stage figures (`stage_timings`, by namespace)."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    truth = any(f.has_truth for r in reports.values() for f in r.ordered())
    panels = ["keypoints", "matches", *(["correct"] if truth else []), "length"]
    fig = plt.figure(figsize=(9, 2.1 * (len(panels) + 1.4)))
    grid = fig.add_gridspec(len(panels) + 1, 1, height_ratios=[1] * len(panels) + [1.4])
    axes = [fig.add_subplot(grid[0])]
    axes += [fig.add_subplot(grid[i], sharex=axes[0]) for i in range(1, len(panels))]
    ax = dict(zip(panels, axes, strict=True))
    for ns, report in reports.items():
        frames = report.ordered()
        idx = np.arange(len(frames))
        name = ns or "/"
        line = ax["keypoints"].plot(idx, [f.tracked for f in frames], label=f"{name}: on tracks >= {MIN_TRACK} frames")
        ax["keypoints"].plot(
            idx, [f.keypoints for f in frames], "--", lw=1, color=line[0].get_color(), label=f"{name}: all detected"
        )
        ax["matches"].plot(idx, [f.matches for f in frames], label=name)
        if truth:
            accuracy = [100 * f.correct / f.matches if f.has_truth and f.matches else np.nan for f in frames]
            ax["correct"].plot(idx, accuracy, label=name)
        ax["length"].plot(idx, [f.mean_track_length for f in frames], label=name)
    labels = {
        "keypoints": "keypoints",
        "matches": "matches to the\nprevious frame",
        "correct": "correct matches (%)",
        "length": "mean track length\n(frames so far)",
    }
    for name, a in ax.items():
        a.set_ylabel(labels[name])
        a.grid(alpha=0.3)
    ax["keypoints"].set_ylim(bottom=0)
    ax["keypoints"].legend(loc="lower right", fontsize="small")
    axes[-1].set_xlabel("frame")
    timing_panel(fig.add_subplot(grid[len(panels)]), reports, stage_timings or {})
    fig.suptitle("alike_ros bag report")
    fig.tight_layout()
    return fig


def timing_panel(ax, reports: dict[str, CameraReport], stage_timings: dict[str, dict]) -> None:
    measured = {ns: r for ns, r in reports.items() if len(r.latencies())}
    if measured:
        for ns, report in measured.items():
            values = report.latencies()
            ax.plot(np.arange(len(values)), values, marker=".", label=ns or "/")
            ax.annotate(
                f"first frame (cold start) {values[0]:.0f} ms",
                (0, values[0]),
                fontsize="small",
                xytext=(8, -4),
                textcoords="offset points",
                va="top",
            )
            if len(values) > 1:
                ax.set_ylim(0, 1.5 * max(np.percentile(values[1:], 95), 1.0))  # the cold start may go off scale
        ax.set_xlabel("frame")
        ax.set_ylabel("end-to-end latency\n(ms, wall clock)")
        ax.set_title("image received -> features received, per frame", fontsize="small")
        ax.legend(loc="upper right", fontsize="small")
    elif stage_timings:
        stages = sorted(dict.fromkeys(s for t in stage_timings.values() for s in t), key=stage_rank)
        y = np.arange(len(stages))
        height = 0.8 / (2 * len(stage_timings))
        for k, (ns, timings) in enumerate(stage_timings.items()):
            for j, stat in enumerate(("p50", "p95")):
                values = [timings.get(s, {}).get(stat, np.nan) for s in stages]
                ax.barh(y + (2 * k + j) * height, values, height, label=f"{ns} {'median' if stat == 'p50' else stat}")
        names = {"total": "extractor total"}
        ax.set_yticks(y + height * (len(stage_timings) - 0.5), [names.get(s, s) for s in stages], fontsize="small")
        ax.invert_yaxis()
        ax.set_xlabel("ms per frame (wall clock)")
        ax.set_title("per-stage timing (offline, all frames)", fontsize="small")
        ax.legend(loc="lower right", fontsize="small")
    else:
        ax.text(0.5, 0.5, "no timings in this bag", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    ax.grid(alpha=0.3)


def render_frame(bgr: np.ndarray, marks: Marks | None, caption: list[str]) -> np.ndarray:
    """The frame upscaled to at least VIDEO_MIN_WIDTH, each chosen track as a dot with its tail, coloured by
    track length (OpenCV's turbo: MIN_TRACK blue-green .. LONG_TRACK and more red), under a caption band."""
    h, w = bgr.shape[:2]
    scale = VIDEO_MIN_WIDTH / w if w < VIDEO_MIN_WIDTH else 1.0
    size = (round(w * scale), round(h * scale))
    out = cv2.resize(bgr, size, interpolation=cv2.INTER_CUBIC) if scale != 1.0 else bgr.copy()
    out = (out * 0.75).astype(np.uint8)  # a little darker, so the marks stand out
    if marks is not None and len(marks.tails):
        colours = [tuple(int(c) for c in colour) for colour in track_colours(marks.lengths)]
        shift = 4  # cv2 fixed point: 1/16 pixel
        for tail, colour in zip(marks.tails, colours, strict=True):
            points = np.round(((tail + 0.5) * scale - 0.5) * (1 << shift)).astype(np.int32)
            if len(points) > 1:
                cv2.polylines(out, [points.reshape(-1, 1, 2)], False, colour, 2, cv2.LINE_AA, shift)
        for tail, colour in zip(marks.tails, colours, strict=True):
            point = tuple(int(v) for v in np.round(((tail[-1] + 0.5) * scale - 0.5) * (1 << shift)))
            cv2.circle(out, point, 4 << shift, (0, 0, 0), -1, cv2.LINE_AA, shift)
            cv2.circle(out, point, 3 << shift, colour, -1, cv2.LINE_AA, shift)
    line_height = 20
    band = np.full((line_height * len(caption) + 8, out.shape[1], 3), 32, np.uint8)
    for k, text in enumerate(caption):
        cv2.putText(
            band, text, (8, line_height * (k + 1)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA
        )
    return np.vstack((band, out))


def render_video(path: Path, report: CameraReport) -> list[np.ndarray]:
    """The video frames of one camera: its images (else its debug images, as they are) with the marks."""
    with open_bag(path) as reader:
        topic = report.image_topic
        if topic is None and any(c.topic == f"{report.namespace}/debug_image" for c in reader.connections):
            topic = f"{report.namespace}/debug_image"
        if topic is None:
            raise BagError(f"{path} holds no image of {report.namespace or '/'} to draw on (nor NS/debug_image)")
        conns = [c for c in reader.connections if c.topic == topic]
        order = {stamp: k for k, stamp in enumerate(sorted(report.frames))}
        frames = []
        try:
            for conn, _, raw in reader.messages(conns):
                msg = deserialize_message(raw, IMAGE_TYPES[conn.msgtype])
                stamp = stamp_ns(msg.header.stamp.sec, msg.header.stamp.nanosec)
                if stamp not in report.frames:
                    continue  # dropped: no features
                compressed = conn.msgtype == "sensor_msgs/msg/CompressedImage"
                pixels, color = compressed_to_array(msg) if compressed else image_to_array(msg)
                stats = report.frames[stamp]
                drawn = topic.endswith("/debug_image")
                marks = None if drawn else report.marks.get(stamp)
                caption = [
                    f"{report.namespace or '/'} frame {order[stamp] + 1}/{len(order)}: {stats.keypoints} keypoints, "
                    f"{stats.matches} matches",
                    "as drawn by the extractor (debug_image)"
                    if drawn
                    else f"{len(marks.tails) if marks else 0} best-scored tracks seen in >= {MIN_TRACK} frames, "
                    f"tails of {TAIL}; colour: length {MIN_TRACK} .. {LONG_TRACK}+",
                ]
                frames.append(render_frame(to_bgr8(pixels, color), marks, caption))
        except READ_ERRORS as exc:
            raise BagError(f"{path} is damaged: {exc}") from exc
    return frames


def write_video(frames: list[np.ndarray], out: Path, fps: float = 10.0) -> None:
    """BGR frames as an animated GIF (Pillow, a matplotlib dependency) or an MP4 (OpenCV)."""
    if not frames:
        raise BagError("no frame to write: the bag has no processed image")
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".gif":
        from PIL import Image as PILImage

        # one palette per frame without dithering: the photograph stays smooth and the file small
        pictures = [
            PILImage.fromarray(np.ascontiguousarray(f[..., ::-1])).quantize(
                128, method=PILImage.Quantize.FASTOCTREE, dither=PILImage.Dither.NONE
            )
            for f in frames
        ]
        pictures[0].save(out, save_all=True, append_images=pictures[1:], duration=round(1000 / fps), loop=0)
    elif out.suffix.lower() == ".mp4":
        h, w = frames[0].shape[:2]
        writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        if not writer.isOpened():
            raise BagError(f"OpenCV cannot write {out}")
        for f in frames:
            writer.write(cv2.resize(f, (w, h)) if f.shape[:2] != (h, w) else f)
        writer.release()
    else:
        raise BagError(f"unsupported video format {out.suffix!r}: use .gif or .mp4")


def describe_camera(ns: str, cam: dict[str, Any], threshold: float) -> str:
    if cam["images"] is not None:
        counts = f"{cam['frames']} of {cam['images']} images processed, {cam['dropped']} dropped"
    else:
        counts = f"{cam['frames']} frames processed (no image topic to count the images sent)"
    line = (
        f"{ns}: {counts}; {cam['keypoints_mean']:.0f} keypoints/frame (min {cam['keypoints_min']}), "
        f"{cam[f'keypoints_on_tracks_min{MIN_TRACK}_mean']:.0f} of them on tracks seen in >= {MIN_TRACK} frames; "
        f"{cam['matches_mean']:.0f} matches/frame; {cam['tracks']} tracks "
        f"(mean length {cam['track_length_mean']:.1f}, max {cam['track_length_max']})"
    )
    if "median_error_px" in cam:
        line += (
            f"; vs ground truth: {100 * cam[f'accuracy_{threshold:g}px']:.1f}% of matches within "
            f"{threshold:g} px, median error {cam['median_error_px']:.2f} px"
        )
    return line


def report_main(args: argparse.Namespace) -> int:
    reports = analyse(args.bag, args.ground_truth, args.threshold, video=args.video is not None)
    notes = {r.truth_note for r in reports.values() if r.truth_note}
    if args.ground_truth is not None:
        for note in sorted(notes):
            print(f"note: {note}: no accuracy reported")
    process = read_custom_data(args.bag).get("alike_ros.process", {}).get("cameras", {})
    summary: dict[str, Any] = {}
    stage_timings: dict[str, dict] = {}
    for ns, report in reports.items():
        name = ns or "/"
        cam = report.summary(args.threshold)
        timings = process.get(name, {}).get("timings_ms", {})
        if timings:
            cam["offline_timings_ms"] = stage_timings[name] = timings
        summary[name] = cam
        print(describe_camera(name, cam, args.threshold))
        if "latency_ms" in cam:
            print(f"  {describe_latency(cam['latency_ms'])}")
        elif timings:
            print(f"  {describe_offline(timings, cam['frames'])}")
        elif report.latency_note:
            print(f"  no end-to-end latency: {report.latency_note}")
    for left, pair in analyse_stereo(args.bag, args.ground_truth).items():
        summary.setdefault("stereo", {})[left] = stereo = pair.summary()
        print(describe_stereo(stereo, left))
    if diagnostics := node_diagnostics(args.bag):
        summary["node_diagnostics"] = diagnostics
        processed = sum(len(r.ordered()) for r in reports.values()) if len(reports) == 1 else None
        print(f"  {describe_diagnostics(diagnostics, processed)}")
    if args.plot:
        plot(reports, args.plot, stage_timings)
        print(f"wrote {args.plot}")
    if args.video:
        report = next((r for r in reports.values() if r.frames), None)
        write_video(render_video(args.bag, report) if report else [], args.video)
        print(f"wrote {args.video}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2))
    return 0
