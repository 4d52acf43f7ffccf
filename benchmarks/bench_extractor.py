"""Per-stage extractor timings at 640x480 for each variant: the fast path against the straightforward port.

    python benchmarks/bench_extractor.py [--models alike-t,alike-n] [--runs 20] [--threads 2] [--write]
    python benchmarks/bench_extractor.py --runtimes torch,onnxruntime [--models alike-t] [--runs 40]
    python benchmarks/bench_extractor.py --baseline COMMIT [--models alike-t,alike-n] [--runs 40] [--block 5]

Both paths run in the same process on the same frames, so their ratio is measured under identical
conditions. Weights: the bundled ones, or upstream checkpoints from ../shared/reference when a variant
ships none (speed does not depend on the weight values). `--write` updates BENCHMARKS.md.
`--runtimes` compares the fast path under each runtime instead (the network stage is what differs; detection
and description are the same code), interleaved in the same way. `--baseline` compares the fast path of another
commit (its package taken from git, with its own bundled weights) with this tree's, and first prints how far
apart their keypoints and descriptors are.
"""

from __future__ import annotations

import argparse
import importlib
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import torch
from scipy.spatial import cKDTree

from alike_ros.detection.dkd import DetectorConfig
from alike_ros.extractor import STAGES, Extractor
from alike_ros.model.weights import bundled_weights_path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sections import machine  # noqa: E402

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
    p.add_argument("--baseline", default="", help="a git commit: compare its fast path with this tree's instead")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    frames = test_frames()
    detector = DetectorConfig(top_k=args.top_k, score_threshold=0.0)
    if args.runtimes:
        return compare_runtimes(args, frames, detector)
    if args.baseline:
        return compare_baseline(args, frames, detector)
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
        f"Machine: {machine()}, torch {torch.__version__}, "
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

    def variants(model: str) -> dict[str, Extractor]:
        return {rt: Extractor(model, weights_for(model), "cpu", detector=detector, runtime=rt) for rt in runtimes}

    return compare(args, frames, variants, "runtime", runtime_versions())


def compare_baseline(args: argparse.Namespace, frames: list[np.ndarray], detector: DetectorConfig) -> int:
    """Per-stage medians of the fast path of commit `args.baseline` against this tree's; speed-ups against the
    baseline. The baseline's package is taken from git and imported as `alike_baseline`, with its own weights."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.baseline, "alike_ros"], capture_output=True)
    if archive.returncode:
        raise SystemExit(f"git archive {args.baseline}: {archive.stderr.decode().strip()}")
    with tempfile.TemporaryDirectory(prefix="alike-baseline-") as tmp:
        folder = Path(tmp)
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(folder, filter="data")
        (folder / "alike_ros").rename(folder / "alike_baseline")
        sys.path.insert(0, str(folder))
        baseline = importlib.import_module("alike_baseline.extractor")
        dkd = importlib.import_module("alike_baseline.detection.dkd")
        baseline_detector = dkd.DetectorConfig(**asdict(detector))

        def variants(model: str) -> dict[str, Extractor]:
            return {
                args.baseline: baseline.Extractor(model, None, "cpu", detector=baseline_detector),
                "this tree": Extractor(model, None, "cpu", detector=detector),
            }

        return compare(args, frames, variants, "code", f"baseline {args.baseline}", check_same_features)


def check_same_features(model: str, extractors: dict[str, Extractor], frames: list[np.ndarray]) -> None:
    """Print how far the last extractor's keypoints and descriptors are from the first's on every frame."""
    first, last = list(extractors.values())[0], list(extractors.values())[-1]
    for frame in frames:
        a, b = first(frame, color="bgr"), last(frame, color="bgr")
        distance, nearest = cKDTree(b.keypoints).query(a.keypoints)
        cosine = (a.descriptors * b.descriptors[nearest]).sum(axis=1)
        print(
            f"{model}: {len(a)} and {len(b)} keypoints, farthest nearest neighbour {distance.max():.2g} px, "
            f"lowest descriptor cosine {cosine.min():.7f}"
        )


def compare(
    args: argparse.Namespace,
    frames: list[np.ndarray],
    variants: Callable[[str], dict[str, Extractor]],
    column: str,
    versions: str,
    check: Callable[[str, dict[str, Extractor], list[np.ndarray]], None] | None = None,
) -> int:
    """The table of per-stage medians of each model's variants, interleaved, with speed-ups against the first."""
    lines = [
        f"Command: `{' '.join(['python', 'benchmarks/bench_extractor.py', *sys.argv[1:]])}`  ",
        f"Machine: {machine()}, torch {torch.__version__}, {versions}, "
        f"{args.threads} threads, 640x480, top-k {args.top_k}, median of {args.runs} runs interleaved "
        f"{'frame by frame' if args.block == 1 else f'in turns of {args.block} frames'} (ms); "
        f"load average at the end {os.getloadavg()[0]:.1f}.",
        "",
        f"| model | {column} | {' | '.join(STAGES)} | total | network speed-up | total speed-up |",
        "|---|---|" + "---|" * (len(STAGES) + 3),
    ]
    for model in args.models.split(","):
        extractors = variants(model)
        if check is not None:
            check(model, extractors, frames)
        result = time_paths(extractors, frames, args.runs, args.block)
        print(model, {k: {s: round(v, 1) for s, v in r.items()} for k, r in result.items()}, flush=True)
        base = next(iter(result.values()))
        for name, r in result.items():
            cells = " | ".join(f"{r[s]:.1f}" for s in (*STAGES, "total"))
            ratios = f"{base['network'] / r['network']:.2f}x | {base['total'] / r['total']:.2f}x"
            lines.append(f"| {model} | {name} | {cells} | {ratios} |")
    print("\n".join(lines))
    return 0


def runtime_versions() -> str:
    versions = []
    for name in ("onnxruntime", "openvino"):
        try:
            versions.append(f"{name} {importlib.import_module(name).__version__}")
        except ImportError:
            versions.append(f"{name} absent")
    return ", ".join(versions)


if __name__ == "__main__":
    sys.exit(main())
