"""The report's figure: per-frame panels and a timing panel (matplotlib, written to a file)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...latency import LatencySummary
from .analysis import MIN_TRACK, CameraReport
from .text import stage_rank


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
                ax.set_ylim(0, 1.5 * max(LatencySummary.of(values[1:]).p95, 1.0))  # the cold start may go off scale
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
