"""The cost of each input encoding: its Image message to the extractor's array (the node's `conversion` stage).

    python benchmarks/bench_conversions.py [--size 640x480] [--runs 300] [--write]

For every encoding of `conversions.ENCODINGS`: the sample photograph at the size, as a driver of that encoding
stores it (`from_bgr8`, `array_to_image`), then `image_to_array(msg, use_cv_bridge=False)` as the node and `bag
process` call it: the message checks, the rows copied out of the message, and OpenCV's Bayer or YUV conversion to
BGR where there is one. With OpenCV on one thread and on its default (every core; the node leaves it there), calls
interleaved across encodings and thread settings, so that other load on a shared machine hits all of them alike.
For reference, OpenCV's Bayer to grey on the same mosaic (the node does not use it: the network takes colour).
`--write` replaces the "## Input conversions" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sections import machine, publish  # noqa: E402

from alike_ros.latency import LatencySummary  # noqa: E402
from alike_ros.ros.conversions import ENCODINGS, array_to_image, from_bgr8, image_to_array  # noqa: E402
from alike_ros.scene import load_photo  # noqa: E402

THREADS = {"1 thread": 1, "default": -1}  # cv2.setNumThreads(-1): OpenCV's default, one thread per core
GREY_REFERENCE = "bayer_rggb8 to grey"


def cases(width: int, height: int) -> dict[str, object]:
    """Per encoding a call converting its message; and the Bayer-to-grey reference."""
    bgr = cv2.resize(load_photo(), (width, height), interpolation=cv2.INTER_AREA)
    calls: dict[str, object] = {}
    for encoding in ENCODINGS:
        msg = array_to_image(from_bgr8(bgr, encoding), encoding)
        calls[encoding] = lambda msg=msg: image_to_array(msg, use_cv_bridge=False)
    mosaic = from_bgr8(bgr, "bayer_rggb8")
    calls[GREY_REFERENCE] = lambda: cv2.cvtColor(mosaic, cv2.COLOR_BayerBG2GRAY)  # cv_bridge's code for mono8
    return calls


def measure(calls: dict[str, object], runs: int) -> dict[tuple[str, str], np.ndarray]:
    """ms per call, `runs` of each (case, thread setting), round robin."""
    times: dict[tuple[str, str], list[float]] = {(c, t): [] for c in calls for t in THREADS}
    for _ in range(runs):
        for setting, threads in THREADS.items():
            cv2.setNumThreads(threads)
            for name, call in calls.items():
                start = time.perf_counter()
                call()
                times[(name, setting)].append((time.perf_counter() - start) * 1e3)
    cv2.setNumThreads(-1)
    return {key: np.array(values) for key, values in times.items()}


def report(width: int, height: int, runs: int, times: dict[tuple[str, str], np.ndarray]) -> str:
    header = "| encoding | message MB | " + " | ".join(f"{t}: median / p95 ms" for t in THREADS) + " |"
    rows = [header, "|---|---:|" + "---:|" * len(THREADS)]
    bgr = np.zeros((height, width, 3), np.uint8)
    for name in dict.fromkeys(name for name, _ in times):
        size = f"{len(array_to_image(from_bgr8(bgr, name), name).data) / 1e6:.2f}" if name in ENCODINGS else "-"
        cells = [f"{s.p50:.3f} / {s.p95:.3f}" for s in (LatencySummary.of(times[(name, t)]) for t in THREADS)]
        rows.append(f"| {name} | {size} | " + " | ".join(cells) + " |")
    load = os.getloadavg()[0]
    return "\n".join(
        [
            "## Input conversions",
            "",
            f"Command: `python benchmarks/bench_conversions.py --size {width}x{height} --runs {runs} --write`  ",
            f"Machine: {machine()}, {os.cpu_count()} cores, OpenCV {cv2.__version__}, numpy {np.__version__}; "
            f"{width}x{height}, {runs} calls per cell, interleaved; load average at the end {load:.1f} (other jobs "
            "on the machine inflate absolute times).",
            "",
            "`image_to_array` per encoding (the node's `conversion` stage): checks, rows copied out of the message, "
            "OpenCV's conversion to BGR for Bayer (bilinear demosaicing, cv_bridge's codes) and YUV; the last row "
            "is OpenCV's Bayer to grey on the same mosaic, which the node does not use.",
            "",
            *rows,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="640x480", help="WIDTHxHEIGHT (%(default)s)")
    parser.add_argument("--runs", type=int, default=300, help="calls per encoding and thread setting (%(default)s)")
    parser.add_argument("--write", action="store_true", help="replace the section in BENCHMARKS.md")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    times = measure(cases(width, height), args.runs)
    publish(report(width, height, args.runs, times), args.write)


if __name__ == "__main__":
    main()
