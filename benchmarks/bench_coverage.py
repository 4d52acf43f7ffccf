"""Even coverage against plain top-k: relative pose on real scenes, tracks on the demo sample, and what it costs.

    python benchmarks/bench_coverage.py [--models alike-t,keynet,...] [--budgets 500,1000,2000] [--cell 64] [--write]

At equal keypoint budgets (top_k = max_keypoints = budget, no score threshold), every model with its bundled weights
and OpenCV SIFT (its keypoints chosen the same way) select with `detector.selection` top and grid:
- pose: the real-geometry benchmark of `evaluate` (Strecha's 6 scenes and the TUM frames of ../shared/data/realgeo,
  longer side 1024, mutual nearest neighbours, the essential matrix by RANSAC): AUC of the pose error at 5/10/20
  degrees and mean matches per pair. OpenCV's RANSAC draws from its global generator: it is seeded the same before
  every run, so two runs differ only by what they select;
- tracks: the demo sample's scene (`bag make-sample`: 60 frames at 320x240) through the tracker with the matcher's
  defaults: mean track length and matches per frame;
- cost: `selection.choose` on alike-t's candidate peaks of a VGA TUM frame, median of 200 calls.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from alike_ros.detection.dkd import DetectorConfig, nms_peaks_cpu
from alike_ros.detection.selection import choose
from alike_ros.evaluation.benchmarks import Timer
from alike_ros.evaluation.methods import Detections, ExtractorMethod, Method
from alike_ros.evaluation.pose import evaluate_pose
from alike_ros.evaluation.realgeo import strecha, tum
from alike_ros.extractors.sift_residual import sift_features
from alike_ros.matching.matcher import Matcher, MatcherConfig
from alike_ros.matching.tracker import Tracker
from alike_ros.pipeline import PipelineConfig, build_extractor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_guided import scene_sequence  # noqa: E402
from sections import machine, publish  # noqa: E402

REALGEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "realgeo"
MODELS = "alike-t,keynet,mdnet,sift,sift-residual,unsuperpoint"


def detector(budget: int, selection: str, cell: int) -> DetectorConfig:
    return DetectorConfig(top_k=budget, score_threshold=0.0, max_keypoints=budget, selection=selection, grid_cell=cell)


class SiftSelected(Method):
    """OpenCV SIFT with its keypoints chosen by `selection.choose`, as the sift-residual model chooses them."""

    def __init__(self, config: DetectorConfig):
        self.name, self.config = "SIFT", config

    def detect(self, image: np.ndarray) -> Detections:
        c = self.config
        points, _, descriptors = sift_features(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), c.limit, c.selection,
                                               c.grid_cell)  # fmt: skip
        return Detections(points, descriptors)


def method(model: str, config: DetectorConfig) -> Method:
    if model == "sift":
        return SiftSelected(config)
    built = ExtractorMethod(model, model, None)
    built.extractor.detector = config
    return built


def tracks(model: str, config: DetectorConfig, images: list[np.ndarray]) -> tuple[float, float]:
    """Mean track length over the frames and mean matches per frame, with the node's matcher."""
    extractor = build_extractor(PipelineConfig(model=model, device="cpu", warmup_frames=0, detector=config))
    tracker = Tracker(Matcher(MatcherConfig()))
    lengths, matches = [], []
    for image in images:
        tracked = tracker.update(extractor(image, color="bgr"))
        lengths.append(float(tracked.track_lengths.mean()))
        matches.append(len(tracked.matches.indices))
    return float(np.mean(lengths)), float(np.mean(matches[1:]))


def selection_cost(cell: int, budget: int = 2000) -> str:
    """Median time of `choose` on the candidate peaks of a VGA frame, top and grid."""
    extractor = build_extractor(PipelineConfig(device="cpu", warmup_frames=0))
    frame = tum(REALGEO, 1024)[0].views[0].image
    scores = extractor.score_map(frame)
    peaks = nms_peaks_cpu(scores, 5).view(bool)
    ys, xs = np.nonzero(peaks)
    points, values = np.stack((xs, ys), axis=1), scores[ys, xs]
    times = {}
    for selection in ("top", "grid"):
        runs = []
        for _ in range(200):
            start = time.perf_counter()
            choose(points, values, budget, scores.shape, selection, cell)
            runs.append((time.perf_counter() - start) * 1e3)
        times[selection] = statistics.median(runs)
    h, w = scores.shape
    return (f"Selection of {budget} of {len(values)} candidate peaks ({w}x{h} TUM frame, alike-t): top "
            f"{times['top']:.3f} ms, grid {times['grid']:.3f} ms (median of 200).")  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=MODELS)
    p.add_argument("--budgets", default="500,1000,2000")
    p.add_argument("--cell", type=int, default=64, help="grid_cell, px")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--write", action="store_true", help="replace the section in BENCHMARKS.md")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    scenes = {"Strecha": strecha(REALGEO, 1024), "TUM": tum(REALGEO, 1024)}
    sample = scene_sequence("sample", (320, 240), 60, 60).images
    lines = [
        "## Even coverage",
        "",
        f"Command: `python benchmarks/bench_coverage.py {' '.join(sys.argv[1:])}`  ",
        f"Machine: {machine()}, torch {torch.__version__}, {args.threads} thread(s); grid_cell {args.cell}.",
        "",
        "| model | budget | selection | Strecha AUC@5/10/20 | matches | TUM AUC@5/10/20 | matches "
        "| sample track length | matches/frame |",
        "|---|---:|---|---|---:|---|---:|---:|---:|",
    ]
    print("\n".join(lines), flush=True)
    for model in filter(None, args.models.split(",")):  # --models "": the cost alone
        for budget in map(int, args.budgets.split(",")):
            for selection in ("top", "grid"):
                config = detector(budget, selection, args.cell)
                cells = []
                for scene_list in scenes.values():
                    cv2.setRNGSeed(0)
                    pose = evaluate_pose(method(model, config), scene_list, Timer())
                    cells += ["/".join(f"{100 * a:.1f}" for a in pose.auc), f"{pose.matches:.0f}"]
                if model == "sift":
                    cells += ["", ""]
                else:
                    length, matches = tracks(model, config, sample)
                    cells += [f"{length:.2f}", f"{matches:.0f}"]
                lines.append(f"| {model} | {budget} | {selection} | {' | '.join(cells)} |")
                print(lines[-1], flush=True)
    lines += ["", selection_cost(args.cell)]
    publish("\n".join(lines), args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
