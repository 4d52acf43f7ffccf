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

By concern: `analysis` reads the bag into per-camera statistics, `text` words them, `plot` draws the figure,
`video` the video; `report_main` here is the `bag report` command.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..stereo_report import analyse_stereo, describe_stereo
from ..storage import read_custom_data
from .analysis import (
    IMAGE_TYPES,
    MARK_CELLS,
    MAX_MARKS,
    MIN_TRACK,
    TAIL,
    CameraReport,
    FrameStats,
    Marks,
    analyse,
    choose_marks,
    image_topic,
    latency_summary,
    match_errors,
    measure_latency,
    message_stamps,
    node_diagnostics,
)
from .plot import figure, plot, timing_panel
from .text import STAGE_ORDER, describe_camera, describe_diagnostics, describe_latency, describe_offline, stage_rank
from .video import VIDEO_MIN_WIDTH, render_frame, render_video, write_video

__all__ = [
    "CameraReport",
    "FrameStats",
    "IMAGE_TYPES",
    "MARK_CELLS",
    "MAX_MARKS",
    "MIN_TRACK",
    "Marks",
    "STAGE_ORDER",
    "TAIL",
    "VIDEO_MIN_WIDTH",
    "analyse",
    "choose_marks",
    "describe_camera",
    "describe_diagnostics",
    "describe_latency",
    "describe_offline",
    "figure",
    "image_topic",
    "latency_summary",
    "match_errors",
    "measure_latency",
    "message_stamps",
    "node_diagnostics",
    "plot",
    "render_frame",
    "render_video",
    "report_main",
    "stage_rank",
    "timing_panel",
    "write_video",
]


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
