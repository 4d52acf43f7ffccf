"""Per-stage extractor timings at 640x480 for each variant: the fast path against the straightforward port.

    python benchmarks/bench_extractor.py [--models alike-t,alike-n] [--runs 20] [--threads 2] [--write]
    python benchmarks/bench_extractor.py --runtimes torch,onnxruntime [--models alike-t] [--runs 40]

Both paths run in the same process on the same frames, so their ratio is measured under identical
conditions. Weights: the bundled ones, or upstream checkpoints from ../shared/reference when a variant
ships none (speed does not depend on the weight values). `--write` updates BENCHMARKS.md.
`--runtimes` compares the fast path under each runtime instead (the network stage is what differs; detection
and description are the same code), interleaved in the same way.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from alike_ros.detection.dkd import DetectorConfig
from alike_ros.extractor import STAGES, Extractor
from alike_ros.model.weights import bundled_weights_path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference"
MARK_BEGIN, MARK_END = "<!-- extractor-benchmark:begin -->", "<!-- extractor-benchmark:end -->"


def test_frames() -> list[np.ndarray]:
    """Two real 640x480 frames when ../shared is present, else textured noise (same cost per pixel)."""
    photo = REFERENCE / "images" / "photo_valendas_640x480.png"
    kitti = REFERENCE / "images" / "kitti_000100.png"
    if photo.exists() and kitti.exists():
        return [cv2.imread(str(photo)), cv2.resize(cv2.imread(str(kitti)), (640, 480))]
    rng = np.random.default_rng(0)
    return [cv2.GaussianBlur(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8), (5, 5), 1.5) for _ in range(2)]


def weights_for(model: str) -> Path:
    bundled = bundled_weights_path(model)
    return bundled if bundled.is_file() else REFERENCE / "weights" / f"{model}.pth"


def time_paths(
    extractors: dict[str, Extractor], frames: list[np.ndarray], runs: int, block: int = 1
) -> dict[str, dict[str, float]]:
    """Median per-stage ms of each extractor over `runs` frames; the extractors take turns of `block` frames, so
    a change in machine load hits all alike. With `block` > 1 only the first frame of a turn follows the other
    path (whose large maps evict the caches), as it never would in a node that runs one path."""
    for extractor in extractors.values():
        for frame in frames:  # warm-up: allocator, oneDNN primitive caches
            extractor(frame, color="bgr")
    samples = {name: {s: [] for s in (*STAGES, "total")} for name in extractors}
    for start in range(0, runs, block):
        for name, extractor in extractors.items():
            for i in range(start, min(start + block, runs)):
                for stage, ms in extractor(frames[i % len(frames)], color="bgr").timings.items():
                    samples[name][stage].append(ms)
    return {name: {s: statistics.median(v) for s, v in per.items()} for name, per in samples.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="alike-t,alike-s,alike-n,alike-l")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--top-k", type=int, default=1000)
    p.add_argument("--block", type=int, default=1, help="frames per turn of each path (1: frame by frame)")
    p.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    p.add_argument(
        "--runtimes", default="", help="e.g. torch,onnxruntime: compare the fast path under these runtimes instead"
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    frames = test_frames()
    detector = DetectorConfig(top_k=args.top_k, score_threshold=0.0)
    if args.runtimes:
        return compare_runtimes(args, frames, detector)
    rows = []
    for model in args.models.split(","):
        extractors = {
            name: Extractor(model, weights_for(model), "cpu", detector=detector, fast=fast)
            for name, fast in (("port", False), ("fast", True))
        }
        result = time_paths(extractors, frames, args.runs, args.block)
        rows.append((model, result))
        print(model, {k: {s: round(v, 1) for s, v in r.items()} for k, r in result.items()}, flush=True)

    lines = [
        f"Command: `{' '.join(['python', 'benchmarks/bench_extractor.py', *sys.argv[1:]])}`  ",
        f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{args.threads} threads, 640x480, top-k {args.top_k}, median of {args.runs} runs interleaved "
        f"{'frame by frame' if args.block == 1 else f'in turns of {args.block} frames'} (ms); "
        f"load average at the end {os.getloadavg()[0]:.1f} (other jobs on the machine inflate absolute times).",
        "",
        "| model | path | preprocessing | network | detection | description | total | speed-up |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model, result in rows:
        for name in ("port", "fast"):
            r = result[name]
            speedup = result["port"]["total"] / r["total"]
            cells = " | ".join(f"{r[s]:.1f}" for s in (*STAGES, "total"))
            lines.append(f"| {model} | {name} | {cells} | {speedup:.1f}x |")
    table = "\n".join(lines)
    print(table)
    if args.write:
        path = ROOT / "BENCHMARKS.md"
        text = path.read_text()
        start, end = text.index(MARK_BEGIN) + len(MARK_BEGIN), text.index(MARK_END)
        path.write_text(text[:start] + "\n" + table + "\n" + text[end:])
    return 0


def compare_runtimes(args: argparse.Namespace, frames: list[np.ndarray], detector: DetectorConfig) -> int:
    """Per-stage medians of the fast path under each of `args.runtimes`; speed-ups against the first one."""
    runtimes = args.runtimes.split(",")
    lines = [
        f"Command: `{' '.join(['python', 'benchmarks/bench_extractor.py', *sys.argv[1:]])}`  ",
        f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, {runtime_versions()}, "
        f"{args.threads} threads, 640x480, top-k {args.top_k}, median of {args.runs} runs interleaved "
        f"{'frame by frame' if args.block == 1 else f'in turns of {args.block} frames'} (ms); "
        f"load average at the end {os.getloadavg()[0]:.1f}.",
        "",
        f"| model | runtime | {' | '.join(STAGES)} | total | network speed-up | total speed-up |",
        "|---|---|" + "---|" * (len(STAGES) + 3),
    ]
    for model in args.models.split(","):
        extractors = {rt: Extractor(model, weights_for(model), "cpu", detector=detector, runtime=rt) for rt in runtimes}
        result = time_paths(extractors, frames, args.runs)
        print(model, {k: {s: round(v, 1) for s, v in r.items()} for k, r in result.items()}, flush=True)
        base = result[runtimes[0]]
        for rt in runtimes:
            r = result[rt]
            cells = " | ".join(f"{r[s]:.1f}" for s in (*STAGES, "total"))
            ratios = f"{base['network'] / r['network']:.2f}x | {base['total'] / r['total']:.2f}x"
            lines.append(f"| {model} | {rt} | {cells} | {ratios} |")
    print("\n".join(lines))
    return 0


def runtime_versions() -> str:
    try:
        import onnxruntime
    except ImportError:
        return "onnxruntime absent"
    return f"onnxruntime {onnxruntime.__version__}"


if __name__ == "__main__":
    sys.exit(main())
