"""Stereo accuracy of a processed bag: every `LEFT/stereo_matches` message judged against the ground truth.

The pairs come from `bag process`'s metadata (`stereo`: LEFT -> its right namespace), else from the sample's
(`bag make-sample --stereo`). The ground truth is the two cameras' `NS/homography` topics: a left pixel x lies at
H_right H_left^-1 x in the right frame of the same instant, so its true disparity is x - that point's x. A match is
correct within t px when its disparity (as published: refined on the images where the node refines) is within t of
the true disparity of its left keypoint, and its right keypoint's row within t of the true row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import PointCloud2

from ..geometry import warp_points
from ..ros.messages import decode_stereo_matches
from .process import STEREO_OUTPUT
from .storage import READ_ERRORS, BagError, open_bag, read_custom_data
from .truth import read_truth, stamp_ns

THRESHOLDS = (1.0, 3.0)


@dataclass
class StereoReport:
    left: str
    right: str
    pairs: int = 0
    matches: int = 0
    judged_pairs: int = 0  # pairs with ground truth for both frames
    disparity_errors: list[np.ndarray] = field(default_factory=list)
    row_errors: list[np.ndarray] = field(default_factory=list)
    with_depth: int = 0  # matches with a finite depth
    truth_note: str = ""

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "right": self.right,
            "pairs": self.pairs,
            "matches_mean": self.matches / self.pairs if self.pairs else 0.0,
            "with_depth": self.with_depth,
        }
        if self.judged_pairs:
            disparity, row = np.concatenate(self.disparity_errors), np.concatenate(self.row_errors)
            out["ground_truth_pairs"] = self.judged_pairs
            out["median_disparity_error_px"] = float(np.median(disparity)) if len(disparity) else float("nan")
            for t in THRESHOLDS:
                correct = (disparity <= t) & (row <= t)
                out[f"within_{t:g}px"] = float(correct.mean()) if len(correct) else float("nan")
                out[f"correct_{t:g}px_per_pair"] = float(correct.sum()) / self.judged_pairs
        return out


def stereo_pairs(path: Path, ground_truth: Path | None) -> dict[str, str]:
    """Left namespace -> right namespace, from the processed bag's metadata, else the sample's."""
    process = read_custom_data(path).get("alike_ros.process", {}).get("stereo", {})
    if process:
        return {left: pair["right"] for left, pair in process.items()}
    for bag in (path, ground_truth):
        if bag is not None and (rig := read_custom_data(bag).get("alike_ros.sample", {}).get("stereo")):
            return {rig["left"]: rig["right"]}
    return {}


def disparity_errors(rows: np.ndarray, H_left: np.ndarray, H_right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per match: |disparity - true disparity of its left keypoint| and |right row - true row|, in pixels."""
    left = np.stack((rows["x0"], rows["y0"]), axis=1).astype(np.float64)
    true_right = warp_points(H_right @ np.linalg.inv(H_left), left)
    true_disparity = left[:, 0] - true_right[:, 0]
    return np.abs(rows["disparity"] - true_disparity), np.abs(rows["y1"] - true_right[:, 1])


def analyse_stereo(path: Path, ground_truth: Path | None = None) -> dict[str, StereoReport]:
    """StereoReports by left namespace (empty when the bag has no stereo pair)."""
    reports = {left: StereoReport(left, right) for left, right in stereo_pairs(path, ground_truth).items()}
    if not reports:
        return {}
    truth, note = read_truth(ground_truth or path, [ns for r in reports.values() for ns in (r.left, r.right)])
    topics = {f"{left}/{STEREO_OUTPUT}": report for left, report in reports.items()}
    with open_bag(path) as reader:
        conns = [c for c in reader.connections if c.topic in topics and c.msgtype == "sensor_msgs/msg/PointCloud2"]
        try:
            for conn, _, raw in reader.messages(conns) if conns else ():  # no connection means no filter
                report = topics[conn.topic]
                rows = decode_stereo_matches(deserialize_message(raw, PointCloud2))
                report.pairs += 1
                report.matches += len(rows)
                report.with_depth += int(np.isfinite(rows["depth"]).sum())
                if not len(rows):
                    continue
                H_left = truth[report.left].get(stamp_ns(rows["stamp0_sec"][0], rows["stamp0_nanosec"][0]))
                H_right = truth[report.right].get(stamp_ns(rows["stamp1_sec"][0], rows["stamp1_nanosec"][0]))
                if H_left is not None and H_right is not None:
                    disparity, row = disparity_errors(rows, H_left, H_right)
                    report.disparity_errors.append(disparity)
                    report.row_errors.append(row)
                    report.judged_pairs += 1
        except READ_ERRORS as exc:
            raise BagError(f"{path} is damaged: {exc}") from exc
    for report in reports.values():
        report.truth_note = note
    return reports


def describe_stereo(summary: dict[str, Any], left: str) -> str:
    line = f"{left}:{summary['right']}: {summary['pairs']} pairs, {summary['matches_mean']:.0f} left-right matches/pair"
    if "ground_truth_pairs" in summary:
        within = ", ".join(f"{100 * summary[f'within_{t:g}px']:.1f}% within {t:g} px" for t in THRESHOLDS)
        line += (
            f"; vs ground-truth disparity: {within} "
            f"({summary['correct_1px_per_pair']:.0f} correct within 1 px per pair), "
            f"median error {summary['median_disparity_error_px']:.2f} px"
        )
    return line
