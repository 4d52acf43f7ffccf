"""The offline tools against the library: `extract` and `bag process` time per frame, start-up removed.

Each tool runs as a user runs it (a fresh process), once over N frames and once over 2; the difference over N - 2
frames is its time per frame, without the start-up (imports, model load, the first frame's kernel selection).

- `extract` over N VGA frames (the TUM frames of ../shared/data/realgeo, repeated under new names to make N; noise
  images without ../shared) against the library on the same decoded frames in this process (warmed up), and
  against the straightforward port of upstream ALIKE (`fast=False`: upstream's network and DKD, its outputs equal to
  upstream's within the exactness tests' tolerances), the same frames.
- `bag process` over `bag make-sample --frames N` against the sum of the medians of the compute stages it records
  per frame in the output bag's metadata (conversion to matching).

    python benchmarks/bench_tools.py --frames 24 --bag-frames 60
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from alike_ros.bag.storage import read_custom_data
from alike_ros.detection.dkd import DetectorConfig
from alike_ros.extractor import Extractor
from alike_ros.pipeline import PipelineConfig, build_extractor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sections import machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TUM = ROOT.parent / "shared" / "data" / "realgeo" / "tum_fr3_long_office" / "rgb"


def write_frames(folder: Path, count: int) -> list[Path]:
    """`count` VGA PNGs in `folder`: the TUM frames in turn, else textured noise."""
    sources = sorted(TUM.glob("*.png")) if TUM.is_dir() else []
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = folder / f"frame_{i:04d}.png"
        if sources:
            shutil.copyfile(sources[i % len(sources)], path)
        else:
            noise = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
            cv2.imwrite(str(path), cv2.GaussianBlur(noise, (5, 5), 1.5))
        paths.append(path)
    return paths


def run_seconds(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def per_frame_ms(command: list[str], inputs: tuple, frames: int, env: dict[str, str], repeats: int) -> float:
    """Median over `repeats` of (time over `frames` - time over 2) / (frames - 2), in ms; `inputs` are the
    argument lists for the long and the short run."""
    long_args, short_args = inputs
    samples = [
        (run_seconds(command + long_args, env) - run_seconds(command + short_args, env)) / (frames - 2) * 1e3
        for _ in range(repeats)
    ]
    return statistics.median(samples)


def library_ms(extractor: Extractor, images: list[np.ndarray]) -> float:
    extractor(images[0], color="bgr")  # warm-up, as the tools' first frame is removed too
    start = time.perf_counter()
    for image in images:
        extractor(image, color="bgr")
    return (time.perf_counter() - start) / len(images) * 1e3


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=24, help="images for `extract`")
    p.add_argument("--bag-frames", type=int, default=60, help="frames of the sample bag for `bag process`")
    p.add_argument("--model", default="alike-t")
    p.add_argument("--top-k", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="runs of each tool measurement (median)")
    p.add_argument("--skip-port", action="store_true", help="leave out the upstream port (slow)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    tool = [sys.executable, "-m", "alike_ros"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "frames").mkdir()
        paths = write_frames(tmp / "frames", args.frames)
        images = [cv2.imread(str(path), cv2.IMREAD_UNCHANGED) for path in paths]
        settings = ["--model", args.model, "--top-k", str(args.top_k), "--threads", str(args.threads)]
        detector = DetectorConfig(top_k=args.top_k)
        extractor = build_extractor(PipelineConfig(model=args.model, detector=detector))
        command = [*tool, "extract", *settings]
        runs = ([*map(str, paths), "--out", str(tmp / "a")], [*map(str, paths[:2]), "--out", str(tmp / "b")])
        pairs = []  # (extract, library), measured in turns: a change of machine load hits both alike
        for _ in range(args.repeats):
            pairs.append((per_frame_ms(command, runs, args.frames, env, 1), library_ms(extractor, images)))
        extract, library = (statistics.median(values) for values in zip(*pairs, strict=True))
        ratio = statistics.median(e / lib for e, lib in pairs)
        print(f"extract {extract:.1f} ms/frame, library {library:.1f} ms/frame", flush=True)
        port = None
        if not args.skip_port:
            port = library_ms(Extractor(args.model, None, "cpu", detector=detector, fast=False), images)

        for frames in (args.bag_frames, 2):
            subprocess.run(
                [*tool, "bag", "make-sample", "--frames", str(frames), str(tmp / f"bag{frames}")],
                check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
            )  # fmt: skip
        process = [*tool, "bag", "process", "--threads", str(args.threads), "--overwrite"]
        bag = per_frame_ms(
            process,
            ([str(tmp / f"bag{args.bag_frames}"), str(tmp / "out_long")], [str(tmp / "bag2"), str(tmp / "out_short")]),
            args.bag_frames,
            env,
            args.repeats,
        )
        cameras = read_custom_data(tmp / "out_long")["alike_ros.process"]["cameras"]
        # medians: the tool's per-frame time leaves the first frame (kernel selection) out, and so does a median
        stages = sum(stage["p50"] for cam in cameras.values() for stage in cam["timings_ms"].values())

    print(f"\nCommand: `python benchmarks/bench_tools.py {' '.join(sys.argv[1:])}`  ")
    print(f"Machine: {machine()}, torch {torch.__version__}, {args.threads} threads, {args.model}, top-k {args.top_k}, "
          f"median of {args.repeats} runs; load average at the end {os.getloadavg()[0]:.1f}.\n")  # fmt: skip
    print("| tool | frames | tool ms/frame | reference | reference ms/frame | ratio |")
    print("|---|---:|---:|---|---:|---:|")
    print(f"| `extract` | {args.frames} | {extract:.1f} | library, same frames | {library:.1f} | "
          f"{ratio:.2f}x (median of the turns' ratios) |")  # fmt: skip
    if port is not None:
        print(f"| `extract` | {args.frames} | {extract:.1f} | upstream port, same frames | {port:.1f} | "
              f"{port / extract:.1f}x faster |")  # fmt: skip
    print(f"| `bag process` | {args.bag_frames} | {bag:.1f} | sum of its compute stages' medians | {stages:.1f} | "
          f"{bag / stages:.2f}x |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
