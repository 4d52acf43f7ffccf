"""Per-frame statistics of a processed bag (offline output or node output recorded by `bag replay --record`).

Cameras are found by their `NS/features` topics. Where `NS/homography` exists (see `bag make-sample`; in
the bag itself or in `--ground-truth BAG`), every match (x0 in frame j, x1 in frame k) is checked against
the ground truth: its error is |H_k H_j^-1 x0 - x1| in pixels, with H keyed by the bag timestamp of its
frame, which the sample writes equal to the frame's header stamp.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import Image, PointCloud2
from std_msgs.msg import Float64MultiArray

from ..ros.conversions import image_to_array, to_bgr8
from ..ros.messages import decode_features, decode_matches
from .storage import READ_ERRORS, BagError, open_bag, read_custom_data


@dataclass
class FrameStats:
    stamp_ns: int
    keypoints: int = 0
    matches: int = 0
    mean_track_length: float = 0.0
    correct: int = 0  # matches within the threshold of the ground truth
    median_error: float = float("nan")
    has_truth: bool = False


@dataclass
class CameraReport:
    namespace: str
    frames: dict[int, FrameStats] = field(default_factory=dict)  # by header stamp
    track_seen: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    errors: list[np.ndarray] = field(default_factory=list)
    video: list[np.ndarray] = field(default_factory=list)

    def ordered(self) -> list[FrameStats]:
        return [self.frames[k] for k in sorted(self.frames)]

    def summary(self, threshold: float) -> dict[str, Any]:
        frames = self.ordered()
        kps = np.array([f.keypoints for f in frames])
        matches = np.array([f.matches for f in frames])
        lengths = np.array(list(self.track_seen.values()))
        out: dict[str, Any] = {
            "frames": len(frames),
            "keypoints_mean": float(kps.mean()) if len(kps) else 0.0,
            "keypoints_min": int(kps.min()) if len(kps) else 0,
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
        return out


def stamp_ns(sec: int, nanosec: int) -> int:
    return int(sec) * 10**9 + int(nanosec)


def read_truth(path: Path, namespaces: list[str]) -> dict[str, dict[int, np.ndarray]]:
    """Ground-truth homographies by namespace and bag timestamp."""
    truth: dict[str, dict[int, np.ndarray]] = {ns: {} for ns in namespaces}
    topics = {f"{ns}/homography": ns for ns in namespaces}
    with open_bag(path) as reader:
        conns = [c for c in reader.connections if c.topic in topics]
        for conn, timestamp, raw in reader.messages(conns):
            msg = deserialize_message(raw, Float64MultiArray)
            truth[topics[conn.topic]][timestamp] = np.asarray(msg.data, np.float64).reshape(3, 3)
    return truth


def match_errors(rows: np.ndarray, H0: np.ndarray, H1: np.ndarray) -> np.ndarray:
    """Pixel distance between each match's x1 and its x0 carried into frame 1 by the ground truth."""
    x0 = np.stack((rows["x0"], rows["y0"]), axis=1).astype(np.float64)
    projected = cv2.perspectiveTransform(x0[None], H1 @ np.linalg.inv(H0))[0]
    x1 = np.stack((rows["x1"], rows["y1"]), axis=1)
    return np.linalg.norm(projected - x1, axis=1)


def analyse(
    path: Path, ground_truth: Path | None = None, threshold: float = 3.0, video: bool = False
) -> dict[str, CameraReport]:
    """CameraReports by namespace; `video` keeps each camera's debug images (BGR) in order."""
    with open_bag(path) as reader:
        namespaces = sorted(
            c.topic.removesuffix("/features")
            for c in reader.connections
            if c.topic.endswith("/features") and c.msgtype == "sensor_msgs/msg/PointCloud2"
        )
        if not namespaces:
            raise BagError(f"{path} has no NS/features topic: process it first (bag process)")
    truth = read_truth(ground_truth or path, namespaces)
    reports = {ns: CameraReport(ns) for ns in namespaces}
    roles = {f"{ns}/{name}": (ns, name) for ns in namespaces for name in ("features", "matches", "debug_image")}
    with open_bag(path) as reader:
        conns = [c for c in reader.connections if c.topic in roles]
        try:
            for conn, _, raw in reader.messages(conns):
                ns, name = roles[conn.topic]
                report = reports[ns]
                msg = deserialize_message(raw, Image if name == "debug_image" else PointCloud2)
                stamp = stamp_ns(msg.header.stamp.sec, msg.header.stamp.nanosec)
                frame = report.frames.setdefault(stamp, FrameStats(stamp))
                if name == "features":
                    feats = decode_features(msg)
                    frame.keypoints = len(feats.keypoints)
                    for track in feats.track_ids.tolist():
                        report.track_seen[track] += 1
                    seen = [report.track_seen[t] for t in feats.track_ids.tolist()]
                    frame.mean_track_length = float(np.mean(seen)) if seen else 0.0
                elif name == "matches":
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
                elif video:
                    report.video.append(to_bgr8(*image_to_array(msg)))
        except READ_ERRORS as exc:
            raise BagError(f"{path} is damaged: {exc}") from exc
    return reports


def node_diagnostics(path: Path) -> dict[str, str]:
    """Key/values of the last /diagnostics status with latency figures (recorded from the live node), or {}."""
    last: dict[str, str] = {}
    with open_bag(path) as reader:
        conns = [c for c in reader.connections if c.topic == "/diagnostics"]
        for _, _, raw in reader.messages(conns) if conns else ():
            for status in deserialize_message(raw, DiagnosticArray).status:
                values = {kv.key: kv.value for kv in status.values}
                if any(k.startswith("latency.") for k in values):
                    last = values
    return last


def describe_diagnostics(values: dict[str, str]) -> str:
    stages = [k.removeprefix("latency.").removesuffix(".mean_ms") for k in values if k.endswith(".mean_ms")]
    latency = ", ".join(
        f"{s} {float(values[f'latency.{s}.mean_ms']):.1f}/{float(values[f'latency.{s}.p95_ms']):.1f}" for s in stages
    )
    return (
        f"live node, at its last /diagnostics: {values.get('frames.processed')} of {values.get('frames.received')} "
        f"frames processed, {values.get('frames.dropped')} dropped; latency ms (mean/p95): {latency} "
        "(end_to_end is on the node clock: under use_sim_time, bag time as ticked by /clock)"
    )


def plot(reports: dict[str, CameraReport], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(4, 1, figsize=(8, 9), sharex=True)
    for ns, report in reports.items():
        frames = report.ordered()
        idx = np.arange(len(frames))
        axes[0].plot(idx, [f.keypoints for f in frames], label=ns or "/")
        axes[1].plot(idx, [f.matches for f in frames], label=ns or "/")
        accuracy = [100 * f.correct / f.matches if f.has_truth and f.matches else np.nan for f in frames]
        axes[2].plot(idx, accuracy, label=ns or "/")
        axes[3].plot(idx, [f.mean_track_length for f in frames], label=ns or "/")
    for ax, label in zip(axes, ("keypoints", "matches", "correct matches (%)", "mean track length"), strict=True):
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="best", fontsize="small")
    axes[-1].set_xlabel("frame")
    fig.suptitle("alike_ros bag report")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def write_video(frames: list[np.ndarray], out: Path, fps: float = 10.0) -> None:
    """BGR frames as an animated GIF (Pillow, a matplotlib dependency) or an MP4 (OpenCV)."""
    if not frames:
        raise BagError("the bag has no debug_image messages: process it with --debug-image")
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".gif":
        from PIL import Image as PILImage

        pictures = [PILImage.fromarray(np.ascontiguousarray(f[..., ::-1])) for f in frames]
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


def report_main(args: argparse.Namespace) -> int:
    reports = analyse(args.bag, args.ground_truth, args.threshold, video=args.video is not None)
    process = read_custom_data(args.bag).get("alike_ros.process", {})
    summary: dict[str, Any] = {}
    for ns, report in reports.items():
        cam = report.summary(args.threshold)
        timings = process.get("cameras", {}).get(ns or "/", {}).get("timings_ms", {})
        if "total" in timings:
            cam["extractor_ms"] = timings["total"]
            cam["matching_ms"] = timings.get("matching")
        summary[ns or "/"] = cam
        line = (
            f"{ns or '/'}: {cam['frames']} frames, {cam['keypoints_mean']:.0f} keypoints/frame "
            f"(min {cam['keypoints_min']}), {cam['matches_mean']:.0f} matches/frame, "
            f"{cam['tracks']} tracks (mean length {cam['track_length_mean']:.1f}, max {cam['track_length_max']})"
        )
        if "median_error_px" in cam:
            line += (
                f"; vs ground truth: {100 * cam[f'accuracy_{args.threshold:g}px']:.1f}% of matches within "
                f"{args.threshold:g} px, median error {cam['median_error_px']:.2f} px"
            )
        if "extractor_ms" in cam:
            t = cam["extractor_ms"]
            line += f"; extractor {t['mean']:.1f} ms mean, {t['p95']:.1f} ms p95 per frame (offline)"
        print(line)
    if diagnostics := node_diagnostics(args.bag):
        summary["node_diagnostics"] = diagnostics
        print(describe_diagnostics(diagnostics))
    if args.plot:
        plot(reports, args.plot)
        print(f"wrote {args.plot}")
    if args.video:
        write_video(next((r.video for r in reports.values() if r.video), []), args.video)
        print(f"wrote {args.video}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2))
    return 0
