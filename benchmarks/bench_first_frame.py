"""The first frames after start-up, against the steady median: what `warmup_frames` / `warmup_sizes` buy.

    python benchmarks/bench_first_frame.py [--model alike-t] [--sizes 640x480,1280x720] [--frames 30] [--write]

Each case is a fresh process, as a node's start is: the `FramePipeline` is built as the node builds it (load,
warm-up), then a real photo resized to the size and shifted 2 px per frame runs through extraction and matching.
Per case: build + warm-up time, the first and second frame, the median of the rest, and first / median. Cases per
size: warmed up at that size (the default when the size is listed in `warmup_sizes`), warmed up at another size
only, and not warmed up at all (`warmup_frames: 0`). `--write` replaces the "## First frame" section of
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_extractor import test_frames  # noqa: E402
from sections import machine, publish  # noqa: E402


def run_case(model: str, size: str, warmup_sizes: str, warmup_frames: int, frames: int, threads: int) -> dict:
    """One start-up in this process: build, then `frames` frames; ms per frame (extraction + matching)."""
    from alike_ros.detection.dkd import DetectorConfig
    from alike_ros.pipeline import FramePipeline, PipelineConfig, parse_sizes

    torch.set_num_threads(threads)
    ((height, width),) = parse_sizes(size)
    photo = cv2.resize(test_frames()[0], (width + 2 * frames, height), interpolation=cv2.INTER_AREA)
    config = PipelineConfig(
        model=model,
        device="cpu",
        warmup_frames=warmup_frames,
        warmup_sizes=warmup_sizes,
        detector=DetectorConfig(top_k=1000, score_threshold=0.0, max_keypoints=1000),
    )
    start = time.perf_counter()
    pipeline = FramePipeline(config)
    build_s = time.perf_counter() - start
    times = []
    for i in range(frames):
        frame = np.ascontiguousarray(photo[:, 2 * i : 2 * i + width])
        start = time.perf_counter()
        pipeline(frame, "bgr", i)
        times.append((time.perf_counter() - start) * 1e3)
    return {"build_s": build_s, "times": times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="alike-t")
    parser.add_argument("--sizes", default="640x480,1280x720")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # "SIZE;WARMUP_SIZES;WARMUP_FRAMES": run one, print JSON
    args = parser.parse_args()
    if args.case:
        size, warmup_sizes, warmup_frames = args.case.split(";")
        print(json.dumps(run_case(args.model, size, warmup_sizes, int(warmup_frames), args.frames, args.threads)))
        return

    sizes = args.sizes.split(",")
    lines = [
        "## First frame",
        "",
        f"`python benchmarks/bench_first_frame.py --model {args.model} --sizes {args.sizes} --frames {args.frames}"
        + (" --write`" if args.write else "`"),
        f"({machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{args.threads} threads; one fresh process per row, {args.model} at top-k 1000, extraction + matching per "
        "frame in ms; median over frames 3 onwards):",
        "",
        "| frame size | warm-up | build + warm-up (s) | frame 1 | frame 2 | median | frame 1 / median |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for size in sizes:
        other = next((s for s in sizes if s != size), None)
        cases = [(f"2 frames at {size}", size, 2)]
        if other:
            cases.append((f"2 frames at {other} only", other, 2))
        cases.append(("none", size, 0))
        for label, warmup_sizes, warmup_frames in cases:
            command = [sys.executable, __file__, "--model", args.model, "--frames", str(args.frames)]
            command += ["--threads", str(args.threads), "--case", f"{size};{warmup_sizes};{warmup_frames}"]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            result = json.loads(output.strip().splitlines()[-1])
            times = result["times"]
            median = statistics.median(times[2:])
            row = (
                f"| {size} | {label} | {result['build_s']:.2f} | {times[0]:.1f} | {times[1]:.1f} | {median:.1f} | "
                f"{times[0] / median:.2f}x |"
            )
            print(row, flush=True)
            lines.append(row)
    publish("\n".join(lines) + "\n", args.write)


if __name__ == "__main__":
    main()
