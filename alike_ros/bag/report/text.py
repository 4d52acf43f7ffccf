"""The report's lines of text: per camera, its latency or offline timings, and the node's diagnostics."""

from __future__ import annotations

from typing import Any

from ...monitoring import END_TO_END
from ...ros.diagnostics import stage_medians
from .analysis import MIN_TRACK


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


STAGE_ORDER = ("conversion", "preprocess", "preprocessing", "network", "detection", "description", "total", "matching")


def stage_rank(stage: str) -> int:
    return STAGE_ORDER.index(stage) if stage in STAGE_ORDER else len(STAGE_ORDER)
