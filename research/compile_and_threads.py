"""Candidates measured, not assumed: intra-op thread count and `torch.compile` of the fast path.

    python research/compile_and_threads.py [--model alike-t] [--runs 20]

Fast-path extraction at 640x480, top-k 1000, on the benchmark frames. Threads: the same extractor timed
with 1 and 2 intra-op threads. Compile: the network of the fast path wrapped in `torch.compile` (inductor,
static shape), timed interleaved with the eager one (`bench_extractor.time_paths`), with its first-call
time and its deviation from eager.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from alike_ros.detection.dkd import DetectorConfig
from alike_ros.extractor import Extractor

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_extractor import test_frames, time_paths, weights_for  # noqa: E402


def deviation(a: Extractor, b: Extractor, frames: list[np.ndarray]) -> tuple[float, float]:
    """Largest keypoint distance and smallest descriptor cosine between two extractors' outputs."""
    shift, cosine = 0.0, 1.0
    for frame in frames:
        fa, fb = a(frame, color="bgr"), b(frame, color="bgr")
        if len(fa) != len(fb):
            return float("inf"), float("nan")
        shift = max(shift, float(np.abs(fa.keypoints - fb.keypoints).max()))
        cosine = min(cosine, float((fa.descriptors * fb.descriptors).sum(1).min()))
    return shift, cosine


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="alike-t")
    p.add_argument("--runs", type=int, default=20)
    args = p.parse_args()
    frames = test_frames()
    detector = DetectorConfig(top_k=1000, score_threshold=0.0)
    eager = Extractor(args.model, weights_for(args.model), "cpu", detector=detector)

    print(f"{args.model}, 640x480, top-k 1000, median of {args.runs} runs (ms)\n")
    print("| threads | network | total |\n|---|---|---|")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        t = time_paths({"eager": eager}, frames, args.runs)["eager"]
        print(f"| {threads} | {t['network']:.1f} | {t['total']:.1f} |")

    compiled = Extractor(args.model, weights_for(args.model), "cpu", detector=detector)
    compiled.net = torch.compile(compiled.net, dynamic=False)
    start = time.perf_counter()
    compiled(frames[0], color="bgr")
    compile_s = time.perf_counter() - start
    shift, cosine = deviation(eager, compiled, frames)
    timings = time_paths({"eager": eager, "compiled": compiled}, frames, args.runs)
    print(f"\ntorch.compile (inductor): first call {compile_s:.1f} s; vs eager: max keypoint shift {shift:.2g} px, ")
    print(f"min descriptor cosine {cosine:.6f}\n")
    print("| path (2 threads) | network | total |\n|---|---|---|")
    for name, t in timings.items():
        print(f"| {name} | {t['network']:.1f} | {t['total']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
