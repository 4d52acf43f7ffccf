"""Several cameras: two cameras served by one node against two nodes of one camera each; a stereo pair's cost.

    python benchmarks/bench_cameras.py [--seconds 20] [--rate 15] [--size 640x480] [--write]

Layouts, each with two stand-in cameras (`python -m alike_ros camera`, one process each, reliable) publishing
--size bgr8 at --rate Hz for --seconds:
- one node: `cameras:=a,b`, one model for both, with 2 worker threads (the default) and with 1;
- two nodes: one node per camera, each with its own model.
Nodes run the package defaults on the CPU. Per camera, from the nodes' /diagnostics once they are idle: frames
received and processed (and processed per second of the run); per layout: the nodes' CPU time per second of the run
(user + system, /proc/PID/stat) and their resident memory at the end (VmRSS, summed over the nodes).

Batching: alike-t's network on two VGA frames one after the other against one batch of two, in this process.

Stereo: the cost of one pair's left-right work in the node, in this process on one VGA pair of the sample scene (the
right view moved 8 px): `match_rectified` on the two frames' alike-t features, `refine` on the images, and the
stamp pairing, median over --repeats. `--write` replaces only the "## Several cameras" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sections import machine, publish, ros_stack

from alike_ros import extractors
from alike_ros.detection.dkd import DetectorConfig
from alike_ros.matching.matcher import MatcherConfig
from alike_ros.matching.stereo import StereoConfig, match_rectified, refine
from alike_ros.ros.camera import FrameSource
from alike_ros.ros.diagnostics import frame_counters, in_flight
from alike_ros.ros.stereo import LEFT, RIGHT, StampPairing

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "/bench_cameras"
GUARD = 180.0  # s: a failure guard, never a measurement


class Diagnostics:
    """The latest /diagnostics status of each name, heard in a thread of this process."""

    def __init__(self, context: Context):
        self.node = Node("bench_cameras_probe", context=context)
        self.lock = threading.Lock()
        self.latest: dict[str, dict[str, int]] = {}
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_status, 10)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        threading.Thread(target=self.executor.spin, daemon=True).start()

    def _on_status(self, msg: DiagnosticArray) -> None:
        with self.lock:
            for status in msg.status:
                if status.name.startswith(NAMESPACE):
                    self.latest[status.name] = frame_counters(status)

    def idle(self, names: list[str]) -> dict[str, dict[str, int]]:
        deadline = time.monotonic() + GUARD
        while time.monotonic() < deadline:
            with self.lock:
                counts = {name: self.latest.get(name) for name in names}
            if all(c is not None and in_flight(c) == 0 for c in counts.values()):
                return counts
            time.sleep(0.2)
        raise RuntimeError(f"no idle status from {names}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")) / 1024


def run_layout(one_node: bool, workers: int, args: argparse.Namespace, probe: Diagnostics) -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    node_command = [
        sys.executable, "-m", "alike_ros", "node", "--ros-args", "--params-file", "config/extractor.yaml",
        "-p", "device:=cpu", "-p", f"warmup_sizes:={args.size}", "-p", "diagnostics.period:=0.5",
    ]  # fmt: skip
    if one_node:
        commands = [[*node_command, "-p", "cameras:=a,b", "-p", f"workers:={workers}", "-r", f"__ns:={NAMESPACE}"]]
        statuses = [f"{NAMESPACE}/extractor/{c}: alike extractor" for c in "ab"]
    else:
        commands = [[*node_command, "-r", f"__ns:={NAMESPACE}/{c}"] for c in "ab"]
        statuses = [f"{NAMESPACE}/{c}/extractor: alike extractor" for c in "ab"]
    nodes = [
        subprocess.Popen(c, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for c in commands
    ]
    try:
        probe.idle(statuses)  # the nodes are up, their models loaded
        before = {pid: cpu_seconds(pid) for pid in (n.pid for n in nodes)}
        camera = [sys.executable, "-m", "alike_ros", "camera", "--size", args.size, "--rate", f"{args.rate:g}",
                  "--seconds", f"{args.seconds:g}", "--wait-for-subscribers", "30"]  # fmt: skip
        start = time.monotonic()
        cameras = [
            subprocess.Popen([*camera, "--ros-args", "-r", f"__ns:={NAMESPACE}/{c}"], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for c in "ab"
        ]  # fmt: skip
        for process in cameras:
            process.wait(timeout=args.seconds + GUARD)
        elapsed = time.monotonic() - start
        cpu = sum(cpu_seconds(pid) - t for pid, t in before.items()) / elapsed
        rss = sum(rss_mib(n.pid) for n in nodes)
        time.sleep(1.0)
        counts = probe.idle(statuses)
    finally:
        for node in nodes:
            node.send_signal(2)
        for node in nodes:
            node.wait(timeout=60)
    return {"counts": list(counts.values()), "seconds": elapsed, "cpu": cpu, "rss": rss}


def stereo_costs(repeats: int) -> dict[str, float]:
    source = FrameSource((640, 480), "mono8")
    left = source.pixels(0)
    right = cv2.warpAffine(left, np.float32([[1, 0, -8.0], [0, 1, 0]]), (640, 480), borderMode=cv2.BORDER_REPLICATE)
    extractor = extractors.build("alike-t", extractors.Options(None, "cpu", detector=DetectorConfig()))
    fl, fr = extractor(left), extractor(right)
    config, matcher = StereoConfig(), MatcherConfig()
    times: dict[str, list[float]] = {"match_rectified": [], "refine": [], "pairing": []}
    for i in range(repeats):
        t0 = time.perf_counter()
        found = match_rectified(fl.keypoints, fl.descriptors, fr.keypoints, fr.descriptors, matcher, config)
        t1 = time.perf_counter()
        refined = refine(left, right, fl.keypoints, fr.keypoints, found, config)
        t2 = time.perf_counter()
        pairing = StampPairing(0)
        pairing.add(LEFT, i, "left")
        pairing.add(RIGHT, i, "right")
        t3 = time.perf_counter()
        for name, seconds in zip(times, (t1 - t0, t2 - t1, t3 - t2), strict=True):
            times[name].append(seconds * 1e3)
    medians = {name: float(np.median(values)) for name, values in times.items()}
    medians.update(keypoints=float(len(fl)), matches=float(len(found)), refined=float(len(refined)))
    return medians


def network_batch_costs(repeats: int) -> tuple[float, float]:
    """alike-t's network on two VGA frames: one after the other, and as one batch of two (median ms)."""
    source = FrameSource((640, 480), "bgr8")
    extractor = extractors.build("alike-t", extractors.Options(None, "cpu"))
    tensors = [extractor._prepare(source.pixels(k), "bgr")[1] for k in (0, 5)]
    batch = torch.cat(tensors).contiguous(memory_format=extractor.memory_format)

    def median_ms(run) -> float:
        times = []
        for i in range(repeats + 3):
            start = time.perf_counter()
            run()
            if i >= 3:  # after warming up
                times.append((time.perf_counter() - start) * 1e3)
        return float(np.median(times))

    with torch.inference_mode():
        return median_ms(lambda: [extractor.net(t) for t in tensors]), median_ms(lambda: extractor.net(batch))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=15.0)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--domain", type=int, default=160 + os.getpid() % 10)
    parser.add_argument("--write", action="store_true", help="replace the section in BENCHMARKS.md")
    args = parser.parse_args()
    command = "python benchmarks/bench_cameras.py " + shlex.join(sys.argv[1:])
    os.environ["ROS_DOMAIN_ID"] = str(args.domain)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    context = Context()
    rclpy.init(context=context, domain_id=args.domain)
    probe = Diagnostics(context)
    try:
        layouts = {
            "one node, 2 workers (default)": run_layout(True, 2, args, probe),
            "one node, 1 worker": run_layout(True, 1, args, probe),
            "two nodes": run_layout(False, 1, args, probe),
        }
    finally:
        probe.executor.shutdown()
        context.try_shutdown()
    stereo = stereo_costs(args.repeats)
    sequential_ms, batched_ms = network_batch_costs(args.repeats)
    distro, versions = ros_stack()
    lines = [
        "## Several cameras",
        "",
        f"Command: `{command}` ({machine()}, {os.cpu_count()} cores, {distro}: {versions}). Two stand-in cameras, "
        f"{args.size} bgr8 at {args.rate:g} Hz for {args.seconds:g} s each, each in its own process; the nodes on the "
        "CPU with the package defaults.",
        "",
        "| layout | camera a: received / processed (per s) | camera b: received / processed (per s) "
        "| nodes' CPU s per s | nodes' RSS MiB |",
        "|---|---|---|---|---|",
    ]
    for name, r in layouts.items():
        cells = [f"{c['received']} / {c['processed']} ({c['processed'] / r['seconds']:.1f})" for c in r["counts"]]
        lines.append(f"| {name} | {' | '.join(cells)} | {r['cpu']:.2f} | {r['rss']:.0f} |")
    lines += [
        "",
        f"Stereo, per pair of VGA frames (alike-t, {stereo['keypoints']:.0f} keypoints a frame, "
        f"{stereo['matches']:.0f} row matches, {stereo['refined']:.0f} confirmed on the images; median of "
        f"{args.repeats}): `match_rectified` {stereo['match_rectified']:.1f} ms, `refine` {stereo['refine']:.1f} ms, "
        f"stamp pairing {stereo['pairing'] * 1e3:.0f} µs.",
        "",
        f"Batching on the CPU (torch {torch.__version__}, {torch.get_num_threads()} threads): alike-t's network on two "
        f"640x480 frames took {sequential_ms:.1f} ms one after the other and {batched_ms:.1f} ms as one batch of two "
        f"(median of {args.repeats}).",
        "",
    ]
    publish("\n".join(lines), args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
