"""Extraction time with torch's thread settings, on an idle CPU and beside another busy process.

    python research/threads_under_load.py [--model alike-t] [--frames 20] [--repeats 2] [--load-threads 2]

Each setting runs in a fresh process (OpenMP reads its environment when torch loads): 2 threads with torch's
defaults, 2 threads with `OMP_WAIT_POLICY=PASSIVE` (waiting workers sleep instead of spinning), and 1 thread. Each
times `--frames` extractions of a 640x480 textured image (top-k 1000) after 3 warm-up frames and prints the
median and minimum ms. Then the same again while a second process keeps `--load-threads` threads busy with
matrix products (a stand-in for a camera driver, a VO back end or a training run sharing the cores).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SETTINGS = {
    "2 threads, torch defaults": (2, {}),
    "2 threads, OMP_WAIT_POLICY=PASSIVE": (2, {"OMP_WAIT_POLICY": "PASSIVE"}),
    "1 thread": (1, {}),
}


def measure(model: str, threads: int, frames: int) -> dict:
    import numpy as np
    import torch

    from alike_ros.detection.dkd import DetectorConfig
    from alike_ros.extractor import Extractor

    torch.set_num_threads(threads)
    detector = DetectorConfig(top_k=1000, score_threshold=0.0, max_keypoints=1000)
    extractor = Extractor(model, None, "cpu", detector=detector)
    rng = np.random.default_rng(0)
    image = np.kron(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8), np.ones((8, 8, 1), np.uint8))
    for _ in range(3):
        extractor(image)
    return {"ms": [extractor(image).timings["total"] for _ in range(frames)]}


def busy(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    a = torch.rand(1024, 1024)
    while True:
        a = torch.tanh(a @ a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="alike-t")
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--load-threads", type=int, default=2)
    parser.add_argument("--measure", type=int, help=argparse.SUPPRESS)  # internal: threads, print JSON
    parser.add_argument("--busy", type=int, help=argparse.SUPPRESS)  # internal: the load process
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.model, args.measure, args.frames)))
        return
    if args.busy:
        busy(args.busy)
        return

    print(f"{args.model}, 640x480, top-k 1000, median / min ms of {args.frames} frames, one process per cell:")
    for condition in ("idle", f"beside a process busy on {args.load_threads} threads"):
        load = None
        if condition != "idle":
            load = subprocess.Popen([sys.executable, __file__, "--busy", str(args.load_threads)])
            time.sleep(2.0)
        try:
            for label, (threads, env) in SETTINGS.items():
                cells = []
                for _ in range(args.repeats):
                    command = [sys.executable, __file__, "--model", args.model, "--frames", str(args.frames)]
                    output = subprocess.run(
                        [*command, "--measure", str(threads)],
                        env={**os.environ, **env},
                        check=True,
                        capture_output=True,
                        text=True,
                    ).stdout
                    ms = json.loads(output.strip().splitlines()[-1])["ms"]
                    cells.append(f"{statistics.median(ms):.1f} / {min(ms):.1f}")
                print(f"| {condition} | {label} | " + " | ".join(cells) + " |", flush=True)
        finally:
            if load is not None:
                load.kill()
                load.wait()


if __name__ == "__main__":
    main()
