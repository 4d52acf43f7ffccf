"""Which image sizes cross between two processes, by QoS and Fast DDS profile: plain rclpy, no alike_ros node.

    python benchmarks/bench_dds_matrix.py [--frames 20] [--rate 10] [--write BENCHMARKS.md]

Each cell starts a subscriber process and a publisher process (bgr8 images of the given size, `--frames` of
them at `--rate` Hz after the subscriber matched) and counts the images the subscriber got. "profile" is
config/fastdds_large_data.xml given to the process named under the variable its Fast DDS reads
(FASTRTPS_DEFAULT_PROFILES_FILE on Jazzy's Fast DDS 2.14, FASTDDS_DEFAULT_PROFILES_FILE on Kilted's 3.2). `--write`
replaces only the "## DDS transport between processes: <distribution>" section of the given markdown file.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from sections import machine, replace_section, ros_stack

from alike_ros.ros import fastdds

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "config" / "fastdds_large_data.xml"
SIZES = ((320, 240), (640, 480), (1280, 720))
# (publisher reliability, subscriber reliability, profile on: "", "pub", "sub", "both")
CASES = (
    ("reliable", "reliable", ""),
    ("reliable", "best_effort", ""),
    ("best_effort", "best_effort", ""),
    ("best_effort", "best_effort", "sub"),
    ("best_effort", "best_effort", "pub"),
    ("reliable", "best_effort", "pub"),
    ("best_effort", "best_effort", "both"),
)


def endpoint(role: str, reliability: str, width: int, height: int, frames: int, rate: float, wait: float) -> None:
    """One process of a cell: publish `frames` images, or count what arrives for `wait` seconds."""
    import numpy as np
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    policy = ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
    rclpy.init()  # not `with rclpy.init()`: Jazzy's init returns None
    node = rclpy.create_node(f"dds_matrix_{role}")
    qos = QoSProfile(depth=5, reliability=policy)
    if role == "pub":
        pub = node.create_publisher(Image, "dds_matrix", qos)
        deadline = time.monotonic() + wait
        while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # the subscriber's side of the match, too
        msg = Image(height=height, width=width, encoding="bgr8", step=width * 3)
        msg.data = np.random.default_rng(0).integers(0, 256, height * width * 3, np.uint8).tobytes()
        start = time.monotonic()
        for i in range(frames):
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
            pub.publish(msg)
        time.sleep(1.0)  # reliable resends
    else:
        got = []
        node.create_subscription(Image, "dds_matrix", lambda m: got.append(len(m.data)), qos)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
        print(json.dumps({"received": len(got)}))
    node.destroy_node()
    rclpy.try_shutdown()


def cell(pub: str, sub: str, profile: str, size: tuple[int, int], frames: int, rate: float, domain: int) -> int:
    base = {**os.environ, "ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    for name in fastdds.PROFILE_ENVS:
        base.pop(name, None)

    def env(role: str) -> dict:
        return {**base, **fastdds.profile_environment(PROFILE)} if profile in (role, "both") else base

    wait = frames / rate + 8.0
    args = [sys.executable, __file__, "--endpoint"]
    size_args = [str(size[0]), str(size[1]), str(frames), str(rate), str(wait)]
    subscriber = subprocess.Popen([*args, "sub", sub, *size_args], env=env("sub"), stdout=subprocess.PIPE, text=True)
    subprocess.run([*args, "pub", pub, *size_args], env=env("pub"), check=True)
    out = subscriber.communicate(timeout=wait + 30)[0]
    return json.loads(out.strip().splitlines()[-1])["received"]


def table(results: dict, frames: int, rate: float) -> str:
    sizes = " | ".join(f"{w}x{h} bgr8 ({w * h * 3 / 1e6:.2f} MB)" for w, h in SIZES)
    lines = [f"| publisher → subscriber | profile on | {sizes} |", "|---|---|" + "---|" * len(SIZES)]
    for (pub, sub, profile), counts in results.items():
        cells = " | ".join(f"{n}/{frames}" for n in counts)
        lines.append(f"| {pub} → {sub} | {profile or 'neither'} | {cells} |")
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--endpoint":
        role, reliability, w, h, frames, rate, wait = sys.argv[2:9]
        endpoint(role, reliability, int(w), int(h), int(frames), float(rate), float(wait))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=20, help="images per cell")
    parser.add_argument("--rate", type=float, default=10.0, help="images per second")
    parser.add_argument("--domain", type=int, default=150, help="ROS_DOMAIN_ID of the runs")
    parser.add_argument("--write", type=Path, help="markdown file whose DDS transport section is replaced")
    args = parser.parse_args()
    results = {}
    for case in CASES:
        results[case] = [cell(*case, size, args.frames, args.rate, args.domain) for size in SIZES]
        print(case, results[case], flush=True)
    body = table(results, args.frames, args.rate)
    print(body)
    if args.write:
        command = "python benchmarks/bench_dds_matrix.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        distro, versions = ros_stack()
        meta = (
            f"Measured {time.strftime('%Y-%m-%d')} on {machine()} ({os.cpu_count()} cores), {distro}: {versions}; "
            f"profile given as {', '.join(fastdds.profile_environment(PROFILE))}; "
            f"{args.frames} images at {args.rate:g} Hz per cell, with `{command}`."
        )
        replace_section(args.write, f"## DDS transport between processes: {distro}\n\n{meta}\n\n{body}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
