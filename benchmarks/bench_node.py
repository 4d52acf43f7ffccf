"""Node benchmarks: the node's own overhead per frame, and a soak run for memory growth.

    python benchmarks/bench_node.py [--weights PATH] [--frames 200] [--soak-frames 3000] [--write BENCHMARKS.md]

Overhead: a probe node publishes a 640x480 bgr8 image, waits for its `features` (lock-step, so no frame
queues), and takes the wall time from publish to receipt minus the extractor's own time for that frame
(preprocessing + network + detection + description): what remains is conversion, tracking, message
encoding, DDS transport and executor scheduling. Soak: a few thousand frames published at a fixed rate
(the node drops what it cannot keep up with, as in use), with a debug_image subscriber, sampling RSS.
`--write` replaces only the "## Node" section of the given markdown file.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import rclpy
import torch
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sections import machine, replace_section
from sensor_msgs.msg import Image, PointCloud2
from std_msgs.msg import Header

from alike_ros.latency import LatencySummary
from alike_ros.model.weights import bundled_weights_path
from alike_ros.ros.conversions import array_to_image
from alike_ros.ros.node import ExtractorNode

ROOT = Path(__file__).resolve().parents[1]


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return kib / 1024


def textured(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random colour texture with plenty of keypoints, large enough to cut shifted frames from."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (height // 8 + 2, width // 8 + 2, 3), dtype=np.uint8)
    return cv2.resize(coarse, (width + 16, height + 16), interpolation=cv2.INTER_CUBIC)


class Bench:
    def __init__(self, context: Context, overrides: dict):
        self.node = ExtractorNode(
            context=context,
            namespace="/bench",
            parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()],
        )
        self.probe = Node("bench_probe", context=context, namespace="/bench")
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pub = self.probe.create_publisher(Image, "image", reliable)
        self.cond = threading.Condition()
        self.arrivals: dict[tuple[int, int], float] = {}
        self.probe.create_subscription(PointCloud2, "features", self._on_features, reliable)
        # One executor per node, as if in two processes: in a shared executor the probe's callbacks and the
        # node's compete for the same threads, and the node's reliable publishers then block for up to seconds.
        self.executors = [SingleThreadedExecutor(context=context), SingleThreadedExecutor(context=context)]
        for executor, node in zip(self.executors, (self.node, self.probe), strict=True):
            executor.add_node(node)
            threading.Thread(target=executor.spin, daemon=True).start()
        while self.pub.get_subscription_count() == 0 or self.probe.count_publishers("/bench/features") == 0:
            time.sleep(0.05)

    def _on_features(self, msg: PointCloud2) -> None:
        now = time.perf_counter()
        with self.cond:
            self.arrivals[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = now
            self.cond.notify_all()

    def header(self) -> Header:
        return Header(frame_id="bench", stamp=self.node.get_clock().now().to_msg())

    def overhead(self, frames: int, size: tuple[int, int]) -> dict[str, np.ndarray]:
        """Per-frame round trip, extractor time and their difference (ms), lock-step."""
        canvas = textured(*size)
        wrapper = _Timed(self.node.streams[""].pipeline.extractor)
        self.node.streams[""].pipeline.extractor = wrapper
        rtt, extractor = [], []
        try:
            for k in range(frames):
                header = self.header()
                key = (header.stamp.sec, header.stamp.nanosec)
                msg = array_to_image(
                    np.ascontiguousarray(canvas[k % 16 : k % 16 + size[0], 0 : size[1]]), "bgr8", header
                )
                start = time.perf_counter()
                self.pub.publish(msg)
                with self.cond:
                    self.cond.wait_for(lambda key=key: key in self.arrivals, timeout=60)
                rtt.append((self.arrivals[key] - start) * 1e3)
                extractor.append(wrapper.last_total)
        finally:
            self.node.streams[""].pipeline.extractor = wrapper.real
        rtt_a, ext_a = np.array(rtt), np.array(extractor)
        return {"round trip": rtt_a, "extractor": ext_a, "overhead": rtt_a - ext_a}

    def soak(self, frames: int, size: tuple[int, int], rate: float) -> list[tuple[int, float]]:
        """Publish `frames` at `rate` Hz; RSS (MiB) every 100 frames."""
        self.probe.create_subscription(Image, "debug_image", lambda _: None, 1)
        canvas = textured(*size, seed=1)
        samples = [(0, rss_mib())]
        period = 1.0 / rate
        next_time = time.perf_counter()
        for k in range(1, frames + 1):
            dx = (k * 3) % 16
            self.pub.publish(
                array_to_image(np.ascontiguousarray(canvas[: size[0], dx : dx + size[1]]), "bgr8", self.header())
            )
            next_time += period
            time.sleep(max(0.0, next_time - time.perf_counter()))
            if k % 100 == 0:
                samples.append((k, rss_mib()))
        time.sleep(1.0)
        return samples

    def close(self) -> None:
        for executor in self.executors:
            executor.shutdown()
        self.node.destroy_node()
        self.probe.destroy_node()


class _Timed:
    """Wraps the extractor to remember the last frame's own time."""

    def __init__(self, real):
        self.real, self.last_total = real, 0.0

    def __call__(self, *args, **kwargs):
        features = self.real(*args, **kwargs)
        self.last_total = features.timings["total"]
        return features

    def __getattr__(self, name: str):
        return getattr(self.real, name)


def summary(values: np.ndarray) -> str:
    s = LatencySummary.of(values)
    return f"{s.mean:.2f} | {s.p50:.2f} | {s.p95:.2f} | {s.max:.2f}"


def default_weights() -> Path:
    bundled = bundled_weights_path("alike-t")
    return bundled if bundled.is_file() else ROOT.parent / "shared" / "reference" / "weights" / "alike-t.pth"


def weights_label(path: Path) -> str:
    return "bundled weights" if path == bundled_weights_path("alike-t") else f"weights {path.name}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, default=default_weights())
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=200, help="lock-step frames of the overhead run")
    parser.add_argument("--soak-frames", type=int, default=3000)
    parser.add_argument("--soak-rate", type=float, default=30.0, help="Hz")
    parser.add_argument("--soak-size", default="240x320", help="HxW of the soak frames")
    parser.add_argument("--write", type=Path, help="markdown file whose '## Node' section gets the results")
    args = parser.parse_args()
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, ROOT), *sys.argv[1:]])

    context = Context()
    rclpy.init(context=context, domain_id=90 + os.getpid() % 10)
    overrides = {
        "weights": str(args.weights),
        "device": args.device,
        "diagnostics.window": 100_000,
        "detector.max_keypoints": 2000,
    }
    bench = Bench(context, overrides)
    try:
        result = bench.overhead(args.frames, (480, 640))
        stats = bench.node.statistics()
        soak_size = tuple(int(v) for v in args.soak_size.split("x"))
        samples = bench.soak(args.soak_frames, soak_size, args.soak_rate)
        soak_stats = bench.node.statistics()
    finally:
        bench.close()
        context.try_shutdown()

    dropped = ", ".join(f"{r} {soak_stats.dropped[r] - stats.dropped[r]}" for r in soak_stats.dropped)
    settled = [s for s in samples if s[0] >= min(500, args.soak_frames // 4)]
    frames_axis, rss = np.array([s[0] for s in settled]), np.array([s[1] for s in settled])
    slope = np.polyfit(frames_axis, rss, 1)[0] * 1000 if len(settled) > 1 else 0.0
    lines = [
        "## Node",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine()}, {os.cpu_count()} cores shared with other work, "
        f"torch {torch.__version__} on {args.device}, alike-t ({weights_label(args.weights)}), max 2000 keypoints, "
        "node and probe in one process, each with its own executor (DDS loopback).",
        "",
        f"### Overhead at 640x480 bgr8 ({args.frames} frames, lock-step)",
        "",
        "| ms | mean | p50 | p95 | max |",
        "|---|---|---|---|---|",
        *(f"| {name} | {summary(values)} |" for name, values in result.items()),
        *(
            f"| node stage: {stage} | {summary_of(stats.latency[stage])} |"
            for stage in ("conversion", "matching", "publishing")
        ),
        "",
        "Overhead = publish-to-features wall time minus the extractor's own time of that frame: image conversion, "
        "matching/tracking, PointCloud2 encoding, DDS transport both ways and executor scheduling.",
        "",
        f"### Soak ({args.soak_frames} frames of {args.soak_size} at {args.soak_rate:g} Hz, debug_image subscribed)",
        "",
        f"Received {soak_stats.received - stats.received}, processed {soak_stats.processed - stats.processed}, "
        f"dropped {dropped} (`superseded`: replaced by a newer frame while one was being processed).",
        "",
        "| frames | " + " | ".join(str(k) for k, _ in samples[:: max(1, len(samples) // 10)]) + " |",
        "|---|" + "---|" * len(samples[:: max(1, len(samples) // 10)]),
        "| RSS MiB | " + " | ".join(f"{v:.0f}" for _, v in samples[:: max(1, len(samples) // 10)]) + " |",
        "",
        f"RSS after warm-up: {rss[0]:.1f} MiB at frame {frames_axis[0]}, {rss[-1]:.1f} MiB at frame "
        f"{frames_axis[-1]}; fitted growth {slope:+.2f} MiB per 1000 frames.",
        "",
    ]
    section = "\n".join(lines)
    print(section)
    if args.write:
        replace_section(args.write, section)
    return 0


def summary_of(latency) -> str:
    return f"{latency.mean:.2f} | {latency.p50:.2f} | {latency.p95:.2f} | {latency.max:.2f}"


if __name__ == "__main__":
    sys.exit(main())
