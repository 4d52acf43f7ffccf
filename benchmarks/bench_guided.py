"""Guided matching against global matching on streams: time, correct matches and track lengths.

    python benchmarks/bench_guided.py [--keypoints 1000,2000,5000] [--radii 8,16,32] [--threads 2] [--breakdown]

Each sequence runs through the tracker once per mode (global: `search_radius` 0; guided at each radius), on the same
alike-t features (bundled weights, no score threshold, the top N keypoints):
- `sample`: the demo sample's scene (alike_ros.scene: a photograph under a smooth periodic homography), 60 frames at
  320x240, the motion of `bag make-sample`;
- `sample-vga`: the same at 640x480;
- `fast`: the same at 640x480 moving 5x as fast (a 12-frame cycle: up to about 90 px and 13 degrees of roll between
  frames);
- `tum`: the 17 TUM fr3 long-office frames of ../shared/data/realgeo (640x480, one second apart: large motion).
Correct: a match within 3 px of the ground truth (the homography between the frames; for TUM, the epipolar line of
the ground-truth poses). Time: the tracker's update (matching plus bookkeeping), median per frame.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch

from alike_ros.detection.dkd import DetectorConfig
from alike_ros.extractor import Features
from alike_ros.matching.guided import pairs_within
from alike_ros.matching.matcher import Matcher, MatcherConfig
from alike_ros.matching.tracker import Tracker
from alike_ros.pipeline import PipelineConfig, build_extractor
from alike_ros.scene import homography, load_photo

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sections import machine  # noqa: E402

REALGEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "realgeo"
CORRECT_PX = 3.0


@dataclass
class Sequence:
    name: str
    images: list[np.ndarray]
    truth: list  # per frame after the first: a homography (previous -> this) or a fundamental matrix


def scene_sequence(name: str, size: tuple[int, int], period: int, frames: int) -> Sequence:
    photo = load_photo()
    width, height = size
    hs = [homography(k / period, 0, photo.shape[:2], (height, width)) for k in range(frames)]
    images = [cv2.warpPerspective(photo, h, (width, height), borderMode=cv2.BORDER_REFLECT) for h in hs]
    return Sequence(name, images, [b @ np.linalg.inv(a) for a, b in zip(hs, hs[1:], strict=False)])


def tum_sequence() -> Sequence | None:
    from alike_ros.evaluation.realgeo import tum

    scenes = tum(REALGEO, 1024) if REALGEO.is_dir() else []
    if not scenes:
        return None
    views = scenes[0].views
    images = [cv2.cvtColor(view.image, cv2.COLOR_RGB2BGR) for view in views]
    truth = []
    for i in range(1, len(views)):
        r, t = scenes[0].truth(i - 1, i)
        tx = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])
        k0, k1 = views[i - 1].camera, views[i].camera
        truth.append(np.linalg.inv(k1).T @ tx @ r @ np.linalg.inv(k0))
    return Sequence("tum", images, truth)


def correct(truth: np.ndarray, kp0: np.ndarray, kp1: np.ndarray, fundamental: bool) -> int:
    if len(kp0) == 0:
        return 0
    x0 = np.column_stack((kp0, np.ones(len(kp0))))
    x1 = np.column_stack((kp1, np.ones(len(kp1))))
    if fundamental:  # distance of each point to its epipolar line
        lines = x0 @ truth.T
        error = np.abs(np.sum(lines * x1, axis=1)) / np.hypot(lines[:, 0], lines[:, 1])
    else:
        projected = x0 @ truth.T
        error = np.linalg.norm(projected[:, :2] / projected[:, 2:] - kp1, axis=1)
    return int(np.sum(error <= CORRECT_PX))


def run(features: list[Features], sequence: Sequence, config: MatcherConfig) -> dict[str, float]:
    tracker = Tracker(Matcher(config))
    times, matches, right, lengths, fallbacks = [], [], [], [], 0
    for k, frame in enumerate(features):
        start = time.perf_counter()
        tracked = tracker.update(frame)
        times.append((time.perf_counter() - start) * 1e3)
        lengths.append(float(tracked.track_lengths.mean()))
        if k == 0:
            continue
        fallbacks += tracked.fallback
        i, j = tracked.matches.indices.T
        matches.append(len(i))
        right.append(correct(sequence.truth[k - 1], features[k - 1].keypoints[i], frame.keypoints[j],
                             sequence.name == "tum"))  # fmt: skip
    return {
        "ms": statistics.median(times[1:]),
        "matches": float(np.mean(matches)),
        "correct": float(np.mean(right)),
        "length": float(np.mean(lengths)),
        "fallbacks": fallbacks,
    }


def breakdown(counts: list[int], radii: list[float]) -> int:
    """Median ms of each step of `Matcher.guided` on the first two frames of sample-vga: the grid search for the
    candidate pairs, the gathers of their descriptors, their products, and the matcher's rules over them."""
    first, second = scene_sequence("sample-vga", (640, 480), 60, 2).images
    print(f"Command: `python benchmarks/bench_guided.py {' '.join(sys.argv[1:])}`  ")
    print(f"Machine: {machine()}, torch {torch.__version__}, {torch.get_num_threads()} thread(s); median of 50.\n")
    print("| keypoints | radius | pairs | grid search | gathers | products (gathers included) | rules | in all |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")

    def ms(step) -> float:
        runs = []
        for _ in range(50):
            start = time.perf_counter()
            step()
            runs.append((time.perf_counter() - start) * 1e3)
        return statistics.median(runs)

    for count in counts:
        extractor = build_extractor(PipelineConfig(detector=DetectorConfig.strongest(count)))
        a, b = (extractor(image, color="bgr") for image in (first, second))
        for radius in radii:
            matcher = Matcher(replace(MatcherConfig(), search_radius=radius))
            rows, cols = pairs_within(a.keypoints, b.keypoints, radius)
            sim = np.einsum("ij,ij->i", a.descriptors[rows], b.descriptors[cols], dtype=np.float32)
            steps = [
                ms(lambda: pairs_within(a.keypoints, b.keypoints, radius)),  # noqa: B023 (timed at once)
                ms(lambda: (a.descriptors[rows], b.descriptors[cols])),  # noqa: B023
                ms(lambda: np.einsum("ij,ij->i", a.descriptors[rows], b.descriptors[cols], dtype=np.float32)),  # noqa: B023
                ms(lambda: matcher.from_pairs(rows, cols, sim)),  # noqa: B023
                ms(lambda: matcher.guided(a.keypoints, a.descriptors, b.keypoints, b.descriptors, np.zeros(2))),  # noqa: B023
            ]
            print(f"| {len(a)} | {radius:g} | {len(rows)} | " + " | ".join(f"{t:.2f}" for t in steps) + " |")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keypoints", default="1000,2000,5000")
    p.add_argument("--radii", default="8,16,32")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="runs of each mode; the fastest median is kept")
    p.add_argument("--breakdown", action="store_true", help="only where guided matching's time goes (sample-vga)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.breakdown:
        return breakdown(list(map(int, args.keypoints.split(","))), list(map(float, args.radii.split(","))))
    sequences = [
        scene_sequence("sample", (320, 240), 60, 60),
        scene_sequence("sample-vga", (640, 480), 60, 60),
        scene_sequence("fast", (640, 480), 12, 24),
    ]
    if (tum := tum_sequence()) is not None:
        sequences.append(tum)
    base = MatcherConfig()
    modes = {"global": base} | {f"guided r={r}": replace(base, search_radius=float(r)) for r in args.radii.split(",")}
    print(f"Command: `python benchmarks/bench_guided.py {' '.join(sys.argv[1:])}`  ")
    print(f"Machine: {machine()}, torch {torch.__version__}, {args.threads} threads; alike-t, matcher defaults "
          f"(min_similarity 0.8, mutual), min_guided_share {base.min_guided_share}.\n")  # fmt: skip
    print("| sequence | keypoints | mode | ms/frame | matches | correct (3 px) | mean track length | fallbacks |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for count in map(int, args.keypoints.split(",")):
        # the strongest points, as when these figures were first measured (the grid default spreads them)
        extractor = build_extractor(PipelineConfig(detector=DetectorConfig.strongest(count)))
        for sequence in sequences:
            features = [extractor(image, color="bgr") for image in sequence.images]
            for mode, config in modes.items():
                results = [run(features, sequence, config) for _ in range(args.repeats)]
                r = min(results, key=lambda x: x["ms"])
                kp = np.mean([len(f) for f in features])
                print(f"| {sequence.name} | {kp:.0f} | {mode} | {r['ms']:.2f} | {r['matches']:.0f} | "
                      f"{r['correct']:.0f} | {r['length']:.2f} | {r['fallbacks']} |", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
