"""The node across processes: a camera, the node and a probe, each in its own process, with the package defaults.

    python benchmarks/bench_transport.py [--seconds 20] [--soak-minutes 0] [--write BENCHMARKS.md]

The camera is `python -m alike_ros camera` (a stand-in driver that sets no Fast DDS profile itself); the node is
`python -m alike_ros node --ros-args --params-file config/extractor.yaml -p device:=cpu -r __ns:=/camera
-r image:=image_raw`, one process for every scenario; the probe is this process: a best-effort (sensor-data QoS,
depth 5) and a reliable (depth 10) `features` subscription, and /diagnostics. Scenarios: 640x480 bgr8 at 30 Hz
and 1280x720 bgr8 at 10 Hz, each from a reliable camera (Fast DDS defaults) and from a best-effort camera
started with config/fastdds_large_data.xml under the variable its Fast DDS reads (FASTRTPS_DEFAULT_PROFILES_FILE on
Jazzy, FASTDDS_DEFAULT_PROFILES_FILE on Kilted, as the README tells users), and a best-effort camera without the
profile (the failure of the issue).

Per scenario: frames the camera sent; what the node received, processed, superseded (replaced by a newer frame
while the model was busy) and missed (sent, never received), from the differences of its /diagnostics counters
before the camera starts and after it stops and the node is idle; delivered = received / sent, answered =
(processed + superseded) / sent; the features each probe subscription got, and their end-to-end latency
(probe receipt minus the image's header stamp; one machine, one clock). `--soak-minutes M` adds a run at
640x480, 15 Hz, sampling the node's RSS every 10 s. `--write` replaces (or appends) only the section
"## Node across processes: <distribution>" of the given markdown file.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sections import machine, replace_section, ros_stack
from sensor_msgs.msg import PointCloud2

from alike_ros.latency import LatencySummary
from alike_ros.monitoring import END_TO_END, STAGES
from alike_ros.ros import fastdds
from alike_ros.ros.diagnostics import frame_counters, in_flight, stage_medians

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "config" / "fastdds_large_data.xml"
NAMESPACE = "/camera"
STATUS_NAME = f"{NAMESPACE}/extractor: alike extractor"
NODE_COMMAND = [
    sys.executable, "-m", "alike_ros", "node", "--ros-args", "--params-file", "config/extractor.yaml",
    "-p", "device:=cpu", "-r", f"__ns:={NAMESPACE}", "-r", "image:=image_raw",
]  # fmt: skip
LEVELS = {0: "OK", 1: "WARN", 2: "ERROR", 3: "STALE"}
GUARD = 120.0  # s: a failure guard, never a measurement


@dataclass
class Scenario:
    name: str
    size: str
    rate: float
    reliability: str
    profile: bool  # the camera's process started with the shipped profile (fastdds.profile_environment)

    @property
    def camera(self) -> str:
        if self.reliability == "reliable":
            return "reliable, with the profile" if self.profile else "reliable"
        return "best effort, " + ("with the profile" if self.profile else "**no profile**")


SCENARIOS = [
    Scenario("vga30-reliable", "640x480", 30.0, "reliable", False),
    Scenario("vga30-best-effort", "640x480", 30.0, "best_effort", True),
    Scenario("hd10-reliable", "1280x720", 10.0, "reliable", False),
    Scenario("hd10-best-effort", "1280x720", 10.0, "best_effort", True),
    Scenario("vga30-best-effort-no-profile", "640x480", 30.0, "best_effort", False),
]


@dataclass
class Result:
    scenario: Scenario
    camera: dict
    counts: dict[str, int]  # differences of the node's counters over the scenario
    features: dict[str, int]  # per probe subscription
    latency_ms: dict[str, np.ndarray]  # per probe subscription
    last: str = ""  # the node's last diagnostics (level: message) while the camera was publishing
    worst: str = ""  # the latest of its most severe diagnostics while the camera was publishing
    rss: list[tuple[float, float, int]] = field(default_factory=list)  # (s since start, MiB, missed so far), soak
    stages_ms: dict[str, float] = field(default_factory=dict)  # the node's p50 per stage, last status while publishing
    fallbacks: int = 0  # frames matched globally although matching.search_radius > 0 (guided matching), over the run

    @property
    def sent(self) -> int:
        return self.camera["frames_sent"]

    def share(self, count: int) -> str:
        return f"{100 * count / self.sent:.1f} %" if self.sent else "-"


class Probe:
    """Two `features` subscriptions (best effort, reliable) and /diagnostics, spun in a thread."""

    def __init__(self, context: Context):
        self.node = Node("transport_probe", context=context)
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = {"best_effort": [], "reliable": []}
        self.statuses: list[tuple[float, DiagnosticStatus]] = []  # (monotonic receipt time, status)
        topic = f"{NAMESPACE}/features"
        self.node.create_subscription(
            PointCloud2, topic, lambda m: self._on_features("best_effort", m), qos_profile_sensor_data
        )
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(PointCloud2, topic, lambda m: self._on_features("reliable", m), reliable)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        threading.Thread(target=self.executor.spin, daemon=True).start()

    def _on_features(self, which: str, msg: PointCloud2) -> None:
        now_ns = time.time_ns()  # the camera stamps with the system clock of the same machine
        stamp_ns = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        with self.lock:
            self.latency[which].append((now_ns - stamp_ns) / 1e6)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        now = time.monotonic()
        with self.lock:
            self.statuses.extend((now, s) for s in msg.status if s.name == STATUS_NAME)

    def reset_features(self) -> None:
        with self.lock:
            for samples in self.latency.values():
                samples.clear()

    def features(self) -> dict[str, np.ndarray]:
        with self.lock:
            return {k: np.array(v) for k, v in self.latency.items()}

    def statuses_since(self, since: float) -> list[tuple[float, DiagnosticStatus]]:
        with self.lock:
            return [(t, s) for t, s in self.statuses if t >= since]

    def settled(self, since: float, timeout: float = GUARD) -> dict[str, int]:
        """The node's counters once two consecutive statuses received after `since` agree and account for every
        frame received (the node is idle)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            recent = self.statuses_since(since)
            counts = [frame_counters(status) for _, status in recent[-2:]]
            if len(counts) == 2 and counts[0] == counts[1] == idle(recent[-1][1]):
                return counts[1]
            time.sleep(0.1)
        raise RuntimeError("the node's /diagnostics did not settle (is the node running?)")


def idle(status: DiagnosticStatus) -> dict[str, int] | None:
    """The counters of `status` if every frame received is processed or dropped, else None."""
    c = frame_counters(status)
    return c if in_flight(c) == 0 else None


def base_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name in fastdds.PROFILE_ENVS:  # each process gets the profile only where the scenario says so
        env.pop(name, None)
    env.pop(fastdds.OPT_OUT_ENV, None)  # the node applies its shipped profile: the package default
    return env


def start_node(log: Path, params: list[str], env: list[str]) -> subprocess.Popen:
    """The node with extra `-p NAME:=VALUE` parameters and KEY=VALUE environment variables."""
    command = NODE_COMMAND + [arg for param in params for arg in ("-p", param)]
    extra = dict(item.split("=", 1) for item in env)
    with open(log, "w") as out:
        return subprocess.Popen(command, cwd=ROOT, env={**base_env(), **extra}, stdout=out, stderr=subprocess.STDOUT)


def camera_command(size: str, rate: float, reliability: str, seconds: float) -> list[str]:
    return [
        sys.executable, "-m", "alike_ros", "camera", "--size", size, "--rate", f"{rate:g}",
        "--seconds", f"{seconds:g}", "--reliability", reliability, "--wait-for-subscribers", "30",
        "--ros-args", "-r", f"__ns:={NAMESPACE}", "-r", "image:=image_raw",
    ]  # fmt: skip


def run_camera(
    probe: Probe, node: subprocess.Popen, scenario: Scenario, seconds: float, rss_every: float = 0.0
) -> Result:
    """One scenario: baseline counters, the camera's run, settled counters; RSS samples when `rss_every` > 0."""
    before = probe.settled(time.monotonic() - 5.0)
    fallbacks_before = guided_fallbacks(probe.statuses_since(0.0)[-1][1])
    probe.reset_features()
    env = base_env()
    if scenario.profile:
        env.update(fastdds.profile_environment(PROFILE))
    command = camera_command(scenario.size, scenario.rate, scenario.reliability, seconds)
    started = time.monotonic()
    camera = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rss: list[tuple[float, float, int]] = []
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(camera.communicate()), daemon=True)
    reader.start()
    while reader.is_alive():
        reader.join(timeout=rss_every or 1.0)
        if rss_every and reader.is_alive():
            missed = frame_counters(probe.statuses_since(0.0)[-1][1])["missed"] - before["missed"]
            rss.append((time.monotonic() - started, rss_mib(node.pid), missed))
        if time.monotonic() - started > seconds + GUARD:
            camera.kill()
    ended = time.monotonic()
    if camera.returncode != 0 or not output or not output[0].strip():
        raise RuntimeError(f"camera failed ({camera.returncode}): {output[1][-3000:] if output else ''}")
    report = json.loads(output[0].strip().splitlines()[-1])
    after = probe.settled(ended + 0.5)
    # While the camera was publishing: from its first frame (plus one diagnostics period) to its exit.
    first_frame = ended - report["seconds"]
    publishing = [s for t, s in probe.statuses_since(first_frame + 1.0) if t <= ended]
    latency = probe.features()
    return Result(
        scenario,
        report,
        {k: after[k] - before[k] for k in after},
        {k: len(v) for k, v in latency.items()},
        latency,
        describe(publishing[-1]) if publishing else "(no diagnostics received)",
        describe(max(reversed(publishing), key=level_of)) if publishing else "",
        rss,
        stage_medians({kv.key: kv.value for kv in publishing[-1].values}) if publishing else {},
        guided_fallbacks(probe.statuses_since(0.0)[-1][1]) - fallbacks_before,
    )


def guided_fallbacks(status: DiagnosticStatus) -> int:
    """The node's count of frames that guided matching sent back to global matching (0 where it predates it)."""
    return int(next((kv.value for kv in status.values if kv.key == "matching.guided_fallbacks"), 0))


NODE_STAGES = (*STAGES, END_TO_END)


def describe(status: DiagnosticStatus) -> str:
    return f"{LEVELS.get(level_of(status), '?')}: {status.message}"


def level_of(status: DiagnosticStatus) -> int:
    level = status.level  # a `byte` field: bytes of length 1 in rclpy
    return int.from_bytes(level, "little") if isinstance(level, bytes) else int(level)


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return kib / 1024


def percentiles(values: np.ndarray) -> str:
    s = LatencySummary.of(values)
    return f"{s.p50:.0f} / {s.p95:.0f}" if s.count else "-"


def row(r: Result) -> str:
    c, s = r.counts, r.scenario
    answered = c["processed"] + c["superseded"]
    return (
        f"| {s.size} @ {s.rate:g} Hz | {s.camera} | {r.sent} ({r.camera['rate_hz']:.1f} Hz, {r.camera['late_frames']} "
        f"late) | {c['received']} ({r.share(c['received'])}) | {c['processed']} | {c['superseded']} | {c['missed']} | "
        f"{answered} ({r.share(answered)}) | {r.features['best_effort']} / {r.features['reliable']} | "
        f"{percentiles(r.latency_ms['best_effort'])} | {percentiles(r.latency_ms['reliable'])} |"
    )


def soak_lines(r: Result, minutes: float) -> list[str]:
    c = r.counts
    answered = c["processed"] + c["superseded"]
    settled = [(t, v) for t, v, _ in r.rss if t >= 60.0] or [(t, v) for t, v, _ in r.rss]
    times, values = np.array([t for t, _ in settled]), np.array([v for _, v in settled])
    slope = np.polyfit(times / 3600, values, 1)[0] if len(settled) > 1 else 0.0
    shown = r.rss[:: max(1, len(r.rss) // 12)]
    return [
        f"### Soak: 640x480 bgr8 at 15 Hz for {minutes:g} min, {r.scenario.camera} camera",
        "",
        f"Camera sent {r.sent} ({r.camera['rate_hz']:.2f} Hz, {r.camera['late_frames']} late); node received "
        f"{c['received']} ({r.share(c['received'])}), processed {c['processed']}, superseded {c['superseded']}, "
        f"**missed {c['missed']}**; answered {answered} ({r.share(answered)}); features received "
        f"{r.features['best_effort']} (best effort) / {r.features['reliable']} (reliable), latency p50 / p95 "
        f"{percentiles(r.latency_ms['best_effort'])} ms (best effort), {percentiles(r.latency_ms['reliable'])} ms "
        "(reliable).",
        "",
        "| s | " + " | ".join(f"{t:.0f}" for t, _, _ in shown) + " |",
        "|---|" + "---|" * len(shown),
        "| node RSS MiB | " + " | ".join(f"{v:.0f}" for _, v, _ in shown) + " |",
        "| frames missed so far | " + " | ".join(f"{m}" for _, _, m in shown) + " |",
        "",
        f"Node RSS {values[0]:.1f} MiB at {times[0]:.0f} s (after the first minute), {values[-1]:.1f} MiB at "
        f"{times[-1]:.0f} s; fitted slope {slope:+.2f} MiB/hour. Last diagnostics while the camera ran: "
        f"{r.last}" + (f"; the most severe: {r.worst}" if r.worst != r.last else ""),
        "",
    ]


def section(results: list[Result], soak: Result | None, args: argparse.Namespace, command: str) -> str:
    import torch  # only for the version in the machine line

    load = os.getloadavg()
    distro, versions = ros_stack()
    lines = [
        f"## Node across processes: {distro}",
        "",
        f"Command: `{command}`",
        "",
        f"Date: {datetime.date.today().isoformat()}. Machine: {machine()}, "
        f"{os.cpu_count()} cores shared with other work (load average at the end {load[0]:.1f}), torch "
        f"{torch.__version__}, node on cpu with the package defaults (`{' '.join(NODE_COMMAND[1:])}`"
        f"{''.join(f' -p {p}' for p in args.node_param)}{''.join(f'; env {e}' for e in args.node_env)}), alike-t, "
        f"{distro} ({versions}; the camera's profile as {', '.join(fastdds.profile_environment(PROFILE))}), "
        f"ROS_AUTOMATIC_DISCOVERY_RANGE={os.environ.get('ROS_AUTOMATIC_DISCOVERY_RANGE', '')}. Camera "
        "(`python -m alike_ros camera`), node and probe each in its own process; "
        f"{args.seconds:g} s per scenario.",
        "",
        "| camera | QoS | sent | node received (delivered) | processed | superseded | missed | answered | "
        "features best effort / reliable | latency best effort p50 / p95 ms | latency reliable p50 / p95 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *(row(r) for r in results),
        "",
        "Counts are the node's /diagnostics counters (`frames.received`, `frames.processed`, "
        "`frames.dropped.superseded`, `frames.dropped.missed`) over the scenario. Delivered = received / sent; "
        "answered = (processed + superseded) / sent, superseded = replaced by a newer frame while the model was "
        "busy with the previous one, so each superseded frame was answered by a later one; missed = sent, never "
        "received (gaps in the camera's sequence numbers). Features: messages each probe subscription received "
        "(best effort: sensor-data QoS, depth 5; reliable: depth 10), to compare with processed. Latency: probe "
        "receipt minus the image's header stamp (set by the camera at publication), across the three processes.",
        "",
        "The node's diagnostics while each camera was publishing: the last message, and the most severe one where "
        "it differs:",
        "",
        *(
            f"- {r.scenario.size} @ {r.scenario.rate:g} Hz, {r.scenario.camera}: last {r.last}"
            + (f"; most severe {r.worst}" if r.worst != r.last else "")
            for r in results
        ),
        "",
    ]
    if any(r.fallbacks for r in results):
        lines += [
            "Guided matching's fallbacks to global matching (`matching.guided_fallbacks`): "
            + "; ".join(
                f"{r.scenario.size} @ {r.scenario.rate:g} Hz, {r.scenario.camera}: {r.fallbacks} of "
                f"{r.counts['processed']} frames processed"
                for r in results
            )
            + ".",
            "",
        ]
    lines += [
        "Where the time goes: the node's own median per stage over its diagnostics window (the last 300 frames "
        "processed while the camera ran), then the end-to-end median the probe measured across the processes; "
        "what the node's end_to_end (header stamp to publication) leaves of the stages is the image's transport "
        "to the node and its wait there, what the probe adds is the features' transport.",
        "",
        "| camera | QoS | " + " | ".join(NODE_STAGES) + " | probe (reliable) |",
        "|---|---|" + "---:|" * (len(NODE_STAGES) + 1),
        *(
            f"| {r.scenario.size} @ {r.scenario.rate:g} Hz | {r.scenario.camera} | "
            + " | ".join(f"{r.stages_ms[s]:.1f}" if s in r.stages_ms else "-" for s in NODE_STAGES)
            + f" | {np.median(r.latency_ms['reliable']):.1f} |"
            for r in results
            if len(r.latency_ms["reliable"])
        ),
        "",
    ]
    if soak is not None:
        lines += soak_lines(soak, args.soak_minutes)
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds each camera publishes (default: 20)")
    parser.add_argument(
        "--soak-minutes", type=float, default=0.0, help="also run the soak (640x480 at 15 Hz) for this long; 0: none"
    )
    parser.add_argument(
        "--soak-reliability",
        choices=("reliable", "best_effort"),
        default="reliable",
        help="the soak camera's reliability (best effort gets the shipped profile; default: reliable)",
    )
    parser.add_argument(
        "--soak-profile",
        action="store_true",
        help="start a reliable soak camera with the shipped profile too (a best-effort one always gets it)",
    )
    parser.add_argument(
        "--scenarios",
        nargs="+",
        choices=[s.name for s in SCENARIOS] + ["none"],
        default=[s.name for s in SCENARIOS],
        help="which scenarios to run (default: all; none: the soak only)",
    )
    parser.add_argument(
        "--domain", type=int, default=140 + os.getpid() % 10, help="ROS_DOMAIN_ID of the three processes"
    )
    parser.add_argument(
        "--node-param", action="append", default=[], metavar="NAME:=VALUE", help="a node parameter (repeatable)"
    )
    parser.add_argument(
        "--node-env", action="append", default=[], metavar="KEY=VALUE", help="the node's environment (repeatable)"
    )
    parser.add_argument("--write", type=Path, help="markdown file whose node-across-processes section gets it")
    args = parser.parse_args()
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, ROOT), *sys.argv[1:]])
    os.environ["ROS_DOMAIN_ID"] = str(args.domain)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # one machine: no traffic on the network
    for name in fastdds.PROFILE_ENVS:  # the probe only subscribes: Fast DDS defaults, like a VO front end's
        os.environ.pop(name, None)

    context = Context()
    rclpy.init(context=context, domain_id=args.domain)
    probe = Probe(context)
    log = Path(tempfile.mkdtemp(prefix="bench_transport_")) / "node.log"
    node = start_node(log, args.node_param, args.node_env)
    results: list[Result] = []
    soak = None
    try:
        deadline = time.monotonic() + GUARD
        while not probe.statuses_since(0.0):  # the node publishes diagnostics once its model is loaded
            if node.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the node did not start; its log:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        for scenario in (s for s in SCENARIOS if s.name in args.scenarios):
            print(f"{scenario.name}: {args.seconds:g} s ...", file=sys.stderr, flush=True)
            results.append(run_camera(probe, node, scenario, args.seconds))
            print(row(results[-1]), file=sys.stderr, flush=True)
            print(f"  diagnostics: last {results[-1].last}; most severe {results[-1].worst}", file=sys.stderr)
            print(f"  guided matching fallbacks: {results[-1].fallbacks}", file=sys.stderr)
        if args.soak_minutes > 0:
            print(f"soak: {args.soak_minutes:g} min ...", file=sys.stderr, flush=True)
            profile = args.soak_profile or args.soak_reliability == "best_effort"
            scenario = Scenario("soak", "640x480", 15.0, args.soak_reliability, profile)
            soak = run_camera(probe, node, scenario, args.soak_minutes * 60, rss_every=10.0)
    finally:
        node.send_signal(2)  # SIGINT: the node's clean shutdown
        try:
            node.wait(timeout=30)
        except subprocess.TimeoutExpired:
            node.kill()
        probe.executor.shutdown()
        probe.node.destroy_node()
        context.try_shutdown()
    text = section(results, soak, args, command)
    print(text)
    print(f"node log: {log}", file=sys.stderr)
    if args.write:
        replace_section(args.write, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
