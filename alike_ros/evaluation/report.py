"""Tables (markdown), MMA-curve plots (PNG) and the results block of EVALUATION.md."""

from __future__ import annotations

import os
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on robots or CI
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from .benchmarks import HomographySummary, VideoSummary  # noqa: E402
from .metrics import MHA_THRESHOLDS, MMA_THRESHOLDS, POSE_AUC_DEGREES  # noqa: E402
from .pose import PoseSummary  # noqa: E402
from .stereo import THRESHOLDS as STEREO_THRESHOLDS  # noqa: E402
from .stereo import StereoSummary  # noqa: E402

DOC_START = "<!-- evaluation-results:start (written by `python -m alike_ros evaluate --update-doc`) -->"
DOC_END = "<!-- evaluation-results:end -->"
REALGEO_PREFIX = "realgeo"  # keys of real-geometry sections
POSE_PREFIX = f"{REALGEO_PREFIX}-pose"  # keys of relative-pose sections


@dataclass
class Section:
    """One benchmark subset: a title and, per method, a summary or the reason it has none."""

    key: str
    title: str
    rows: dict[str, HomographySummary | VideoSummary | StereoSummary | PoseSummary | str] = field(default_factory=dict)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _mma_thresholds(section: Section) -> tuple[float, ...]:
    """The thresholds the section's MMA rows were summarised at (all rows of a section share them)."""
    rows = [r for r in section.rows.values() if isinstance(r, HomographySummary)]
    return rows[0].thresholds if rows else MMA_THRESHOLDS


def homography_table(section: Section) -> str:
    mma_cols = [f"MMA@{t}" for t in _mma_thresholds(section)]
    mha_cols = [f"MHA@{t}" for t in MHA_THRESHOLDS]
    head = ["method", "pairs", *mma_cols, *mha_cols, "Rep@3", "MS@3", "#kp/img", "#matches", "ms/img"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in section.rows.items():
        if isinstance(row, str):
            cells = [row] + ["–"] * (len(head) - 2)
        else:
            cells = [str(row.pairs), *map(_pct, row.mma), *map(_pct, row.mha)]
            cells += [_pct(row.repeatability), _pct(row.matching_score), f"{row.keypoints:.0f}", f"{row.matches:.0f}"]
            cells += [f"{row.ms_per_image:.0f}"]
        lines.append("| " + " | ".join([name, *cells]) + " |")
    return "\n".join(lines)


def video_table(section: Section) -> str:
    head = ["method", "pairs", "#kp/frame", "#matches", "F inliers", "inlier ratio %", "ms/img"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in section.rows.items():
        if isinstance(row, str):
            cells = [row] + ["–"] * (len(head) - 2)
        else:
            cells = [str(row.pairs), f"{row.keypoints:.0f}", f"{row.matches:.0f}", f"{row.inliers:.0f}"]
            cells += [_pct(row.inlier_ratio), f"{row.ms_per_image:.0f}"]
        lines.append("| " + " | ".join([name, *cells]) + " |")
    return "\n".join(lines)


def stereo_table(section: Section) -> str:
    within = [f"≤{t:g} px %" for t in STEREO_THRESHOLDS]
    step = ["matches", *within, f"correct@{STEREO_THRESHOLDS[0]:g}"]
    head = ["method", "#kp/img", *step, *(f"refined {c}" for c in step), "ms/pair"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in section.rows.items():
        if isinstance(row, str):
            cells = [row] + ["–"] * (len(head) - 2)
        else:
            cells = [f"{row.keypoints:.0f}"]
            for summary in (row.keypoint_disparities, row.refined):
                cells += [str(summary.matches), *map(_pct, summary.within), str(summary.correct[0])]
            cells.append(f"{row.ms_per_pair:.0f}")
        lines.append("| " + " | ".join([name, *cells]) + " |")
    return "\n".join(lines)


def pose_table(section: Section) -> str:
    head = ["method", "pairs", *(f"AUC@{t}°" for t in POSE_AUC_DEGREES), "failed", "#kp/img", "#matches", "#inliers"]
    head.append("ms/img")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in section.rows.items():
        if isinstance(row, str):
            cells = [row] + ["–"] * (len(head) - 2)
        else:
            cells = [str(row.pairs), *map(_pct, row.auc), str(row.failed), f"{row.keypoints:.0f}"]
            cells += [f"{row.matches:.0f}", f"{row.inliers:.0f}", f"{row.ms_per_image:.0f}"]
        lines.append("| " + " | ".join([name, *cells]) + " |")
    return "\n".join(lines)


def gap_table(sections: list[Section], ours: str, reference: str) -> str | None:
    """Ours minus the reference method: percentage points, and absolute numbers for inlier counts."""
    head = ["benchmark", "MMA@1", "MMA@3", "MHA@1", "MHA@3", "Rep@3", "MS@3", "F inliers", "inlier ratio"]
    lines = []
    for section in sections:
        a, b = section.rows.get(ours), section.rows.get(reference)
        if isinstance(a, HomographySummary) and isinstance(b, HomographySummary):
            diffs = [a.mma[0] - b.mma[0], a.mma[2] - b.mma[2], a.mha[0] - b.mha[0], a.mha[1] - b.mha[1]]
            diffs += [a.repeatability - b.repeatability, a.matching_score - b.matching_score]
            cells = [f"{100 * d:+.1f}" for d in diffs] + ["–", "–"]
        elif isinstance(a, VideoSummary) and isinstance(b, VideoSummary):
            cells = ["–"] * 6 + [f"{a.inliers - b.inliers:+.0f}", f"{100 * (a.inlier_ratio - b.inlier_ratio):+.1f}"]
        else:
            continue
        lines.append("| " + " | ".join([section.title, *cells]) + " |")
    if not lines:
        return None
    intro = f"{ours} minus {reference}:\n\n"
    return intro + "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *lines])


def markdown(sections: list[Section], skipped: list[str], gap: str | None) -> str:
    parts = []
    for section in sections:
        if section.key == "video":
            table = video_table(section)
        elif section.key.startswith("stereo"):
            table = stereo_table(section)
        elif section.key.startswith(POSE_PREFIX):
            table = pose_table(section)
        else:
            table = homography_table(section)
        parts.append(f"#### {section.title}\n\n{table}\n")
    if gap:
        parts.append(f"#### Gap to upstream\n\n{gap}\n")
    if skipped:
        parts.append("#### Skipped\n\n" + "\n".join(f"- {s}" for s in skipped) + "\n")
    return "\n".join(parts)


def plot_mma(sections: list[Section], path: Path) -> bool:
    """One panel per section with homography rows: MMA against the pixel threshold, one line per method."""
    panels = [s for s in sections if any(isinstance(r, HomographySummary) for r in s.rows.values())]
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False, sharey=True)
    for ax, section in zip(axes[0], panels, strict=True):
        if len(section.rows) > len(plt.cm.tab10.colors):  # the default cycle would give two methods one colour
            ax.set_prop_cycle(color=plt.cm.tab20.colors)
        for name, row in section.rows.items():
            if isinstance(row, HomographySummary):
                ax.plot(row.thresholds, 100 * row.mma, marker="o", label=name)
        ax.set_title(textwrap.fill(section.title, 48), fontsize=10)
        ax.set_xlabel("threshold (px)")
        ax.set_xticks(_mma_thresholds(section))
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("MMA (%)")
    axes[0][-1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_video(section: Section, step: int, path: Path) -> bool:
    """RANSAC-F inliers for each frame pair along the video, one line per method."""
    rows = {n: r for n, r in section.rows.items() if isinstance(r, VideoSummary)}
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for name, row in rows.items():
        ax.plot(np.arange(len(row.per_pair_inliers)), row.per_pair_inliers, label=name)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(f"pair index (frames {step} apart)")
    ax.set_ylabel("F-RANSAC inliers")
    ax.set_title(section.title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def update_doc(doc: Path, command: str, body: str, images: list[Path]) -> None:
    """Replace the results block of `doc` (between the markers), or append one if the doc has none."""
    links = "\n".join(f"![{p.stem}]({os.path.relpath(p, doc.parent)})" for p in images)
    block = f"{DOC_START}\n\nCommand:\n\n```\n{command}\n```\n\n{body}\n{links}\n\n{DOC_END}"
    text = doc.read_text() if doc.is_file() else "# Evaluation\n"
    pattern = re.compile(re.escape(DOC_START) + ".*?" + re.escape(DOC_END), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    doc.write_text(text)
