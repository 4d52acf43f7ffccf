"""Every model the package serves, built by name as the node builds it: per-stage ms per 640x480 frame.

    python benchmarks/bench_models.py [--models alike-t,sift-residual,keynet] [--runs 20] [--threads 2] [--write]

Per model: the first frame after building (no warm-up: what a node's first frame costs without
`warmup_frames`), then the median of `--runs` frames, stage by stage, at top-k 1000 (threshold 0). Models are
interleaved frame by frame so a change in machine load hits all alike. Models without bundled weights are
skipped. `--write` replaces the "## Models" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from alike_ros import extractors
from alike_ros.detection.dkd import DetectorConfig
from alike_ros.extractor import STAGES
from alike_ros.model.weights import bundled_weights_path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_extractor import test_frames  # noqa: E402
from sections import machine, publish  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(extractors.names()))
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    frames = test_frames()
    detector = DetectorConfig(top_k=1000, score_threshold=0.0, max_keypoints=1000)
    built, first = {}, {}
    for name in args.models.split(","):
        if not bundled_weights_path(name).is_file():
            print(f"{name}: no bundled weights, skipped")
            continue
        built[name] = extractors.build(name, extractors.Options(device="cpu", detector=detector))
        start = time.perf_counter()
        built[name](frames[0], color="bgr")
        first[name] = (time.perf_counter() - start) * 1e3
    samples = {name: {s: [] for s in (*STAGES, "total")} for name in built}
    for i in range(args.runs):
        for name, extractor in built.items():
            for stage, ms in extractor(frames[i % len(frames)], color="bgr").timings.items():
                samples[name][stage].append(ms)
    lines = [
        "## Models",
        "",
        f"`python benchmarks/bench_models.py --runs {args.runs} --threads {args.threads}"
        + (" --write`" if args.write else "`"),
        f"({machine()}, {os.cpu_count()} cores, torch {torch.__version__}; "
        "640x480, top-k 1000, bundled weights, median ms over the runs; the first frame after building, "
        "without warm-up, apart):",
        "",
        "| model | D | first frame | " + " | ".join(STAGES) + " | total |",
        "|---|---:|---:|" + "---:|" * (len(STAGES) + 1),
    ]
    for name, per in samples.items():
        medians = [statistics.median(per[s]) for s in (*STAGES, "total")]
        dim = built[name].descriptor_dim
        lines.append(f"| {name} | {dim} | {first[name]:.0f} | " + " | ".join(f"{m:.1f}" for m in medians) + " |")
    publish("\n".join(lines) + "\n", args.write)


if __name__ == "__main__":
    main()
