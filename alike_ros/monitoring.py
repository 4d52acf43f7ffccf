"""Latency and health figures of a live frame pipeline (the node's), thread-safe, and their assessment.

Times of arrival are on the caller's clock (nanoseconds; the node's, so rates and ages follow `use_sim_time`);
stage durations are wall-clock milliseconds measured around the work itself. ROS-free: `ros.diagnostics`
turns a `Snapshot` into a diagnostic_msgs status.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from .latency import LatencySummary
from .pipeline import STAGES as PIPELINE_STAGES

STAGES = ("conversion", *PIPELINE_STAGES, "publishing")  # conversion and publishing: the node's own
END_TO_END = "end_to_end"  # from the header stamp to the publication of `features`, on the node clock
# superseded: replaced in the node's one-frame mailbox by a newer frame before the worker took it;
# missed: sent by a publisher but never delivered to the node (overwritten in the depth-1 reader queue or lost
# on the way), known from gaps in the publisher's sequence numbers; the other two are the worker's.
DROP_REASONS = ("superseded", "missed", "bad_input", "model_failure", "unpaired")
RATE_SPAN_NS = 5_000_000_000  # rates count the arrivals of the last 5 s


class Level(IntEnum):
    """Health levels, with the values of diagnostic_msgs' levels."""

    OK = 0
    WARN = 1
    ERROR = 2


@contextmanager
def timed_ms(samples: list[float]) -> Iterator[None]:
    """Appends the block's wall-clock time, in milliseconds, to `samples`."""
    start = time.perf_counter()
    try:
        yield
    finally:
        samples.append((time.perf_counter() - start) * 1e3)


@dataclass
class Snapshot:
    """Everything /diagnostics reports, as numbers (latencies in ms, rates in Hz)."""

    latency: dict[str, LatencySummary]  # every stage of STAGES and END_TO_END
    received: int
    processed: int
    dropped: dict[str, int]  # by reason, since start
    dropped_in_period: dict[str, int]  # by reason, since the last diagnostics message
    input_rate: float
    processing_rate: float
    seconds_since_last_frame: float | None  # None before the first frame
    seconds_since_last_processed: float | None  # None before the first processed frame
    last_error: str
    guided_fallbacks: int = 0  # frames that guided matching matched globally (too few matches near their points)
    level: Level = Level.OK
    message: str = "OK"
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    @property
    def rate_text(self) -> str:
        return f"{self.input_rate:.1f} Hz in, {self.processing_rate:.1f} Hz processed"


def _rate(times: deque[int], now_ns: int) -> float:
    recent = [t for t in times if now_ns - RATE_SPAN_NS <= t <= now_ns]
    if len(recent) < 2 or recent[-1] == recent[0]:
        return 0.0
    return (len(recent) - 1) * 1e9 / (recent[-1] - recent[0])


class Statistics:
    def __init__(self, window: int, start_ns: int):
        self._lock = threading.Lock()
        self._samples = {name: deque(maxlen=window) for name in (*STAGES, END_TO_END)}
        self._arrivals: deque[int] = deque(maxlen=10_000)
        self._completions: deque[int] = deque(maxlen=10_000)
        self._received = self._processed = self._guided_fallbacks = 0
        self._dropped = dict.fromkeys(DROP_REASONS, 0)
        self._dropped_in_period = dict.fromkeys(DROP_REASONS, 0)
        self._last_arrival_ns = start_ns
        self._last_completion_ns: int | None = None
        self._quiet_since_ns = start_ns  # the stale check: from start-up, a frame, or a publisher's arrival
        self._any_frame = False
        self._last_error = ""

    def resize(self, window: int) -> None:
        with self._lock:
            self._samples = {k: deque(v, maxlen=window) for k, v in self._samples.items()}

    def on_received(self, now_ns: int) -> None:
        with self._lock:
            if self._arrivals and now_ns < self._arrivals[-1]:  # the clock went back (a bag looped)
                self._arrivals.clear()
                self._completions.clear()
            self._received += 1
            self._arrivals.append(now_ns)
            self._last_arrival_ns = self._quiet_since_ns = now_ns
            self._any_frame = True

    def on_dropped(self, reason: str, error: str = "", count: int = 1) -> None:
        with self._lock:
            self._dropped[reason] += count
            self._dropped_in_period[reason] += count
            if error:
                self._last_error = f"{reason}: {error}"

    def on_processed(
        self, now_ns: int, stages_ms: dict[str, float], end_to_end_ms: float, guided_fallback: bool = False
    ) -> None:
        with self._lock:
            self._processed += 1
            self._guided_fallbacks += guided_fallback
            self._completions.append(now_ns)
            self._last_completion_ns = now_ns
            for name, value in stages_ms.items():
                self._samples[name].append(value)
            self._samples[END_TO_END].append(end_to_end_ms)

    def start_period(self) -> None:
        """Forget the per-period counts (drops and failures since the last diagnostics message)."""
        with self._lock:
            self._dropped_in_period = dict.fromkeys(DROP_REASONS, 0)

    def snapshot(self, now_ns: int) -> Snapshot:
        with self._lock:
            return Snapshot(
                latency={name: LatencySummary.of(s) for name, s in self._samples.items()},
                received=self._received,
                processed=self._processed,
                dropped=dict(self._dropped),
                dropped_in_period=dict(self._dropped_in_period),
                input_rate=_rate(self._arrivals, now_ns),
                processing_rate=_rate(self._completions, now_ns),
                seconds_since_last_frame=(now_ns - self._last_arrival_ns) / 1e9 if self._any_frame else None,
                seconds_since_last_processed=None
                if self._last_completion_ns is None
                else (now_ns - self._last_completion_ns) / 1e9,
                last_error=self._last_error,
                guided_fallbacks=self._guided_fallbacks,
            )

    def on_publisher_appeared(self, now_ns: int) -> None:
        """A camera came (back) after there was none: it gets the stale timeout to send its first frame."""
        with self._lock:
            self._quiet_since_ns = now_ns

    def stale_seconds(self, now_ns: int) -> float:
        """Seconds without a frame: since the last one, or since start-up or a publisher's arrival if later."""
        with self._lock:
            return (now_ns - self._quiet_since_ns) / 1e9


class SequenceGaps:
    """Frames a publisher sent that never arrived, from gaps in its publication sequence numbers.

    Each message's info names its publisher (`publisher_gid`) where the middleware says so (Kilted's rclpy);
    Jazzy's names none, and then the numbers are one publisher's only while the topic has one publisher."""

    def __init__(self):
        self._last: dict[bytes, int] = {}  # per publisher; b"": the one publisher without a name
        self._publishers = 0

    def missed(self, info: Mapping[str, Any], publishers: int) -> int:
        """How many frames went missing before this message (0 where that cannot be told)."""
        if publishers != self._publishers:  # the unnamed sequence may be another publisher's from now on
            self._publishers = publishers
            self._last.pop(b"", None)
        seq = info.get("publication_sequence_number")
        if not seq:  # the middleware does not tell
            return 0
        if gid := info.get("publisher_gid"):
            key = bytes(gid["data"])
        elif publishers == 1:
            key = b""
        else:  # several publishers' sequences interleave, and nothing tells them apart
            return 0
        last = self._last.get(key)
        if len(self._last) > 1000:  # publishers come and go; never grow without bound
            self._last.clear()
        self._last[key] = seq
        return seq - last - 1 if last is not None and seq > last + 1 else 0


def transport_cause(subscribed: str, offered: list[str], camera_setting: str) -> str:
    """The likely reason frames of existing publishers go missing between processes, with its fix.

    `subscribed` is the node's input reliability, `offered` each publisher's ("reliable" or "best_effort"),
    `camera_setting` the environment a camera driver's process should start with to carry large samples
    (`fastdds.camera_setting()`: the shipped profile under the variable this Fast DDS reads)."""
    if subscribed == "reliable" and "best_effort" in offered:
        return (
            "a best-effort publisher cannot match the node's reliable subscription; "
            "set input.qos.reliability to auto or best_effort"
        )
    if "best_effort" in offered:
        return (
            "best-effort samples larger than the publisher's Fast DDS shared-memory segment (0.5 MiB by default; "
            "640x480 bgr8 is 0.9 MB) are lost between processes; start the camera driver's process with "
            f"{camera_setting}, or make it publish reliable"
        )
    if subscribed == "best_effort" and offered:
        return (
            "a reliable publisher's samples over ~0.5 MB are lost to a best-effort subscription between "
            "processes; set input.qos.reliability to auto or reliable"
        )
    if subscribed == "reliable":
        return (
            "a reliable camera's large samples went missing in Fast DDS's default 0.5 MiB shared-memory segment "
            f"(seen in long runs): start the camera driver's process with {camera_setting}; "
            "or the node's input queue overflowed (is the CPU overloaded?)"
        )
    return "is the publisher publishing? check `ros2 topic hz` on the input topic"


def assess(
    snap: Snapshot, budget_ms: float, stale_s: float, stale_timeout: float, publishers: int, cause: str = ""
) -> Snapshot:
    """Set the level and message: ERROR (model failed or no frames from an existing publisher), WARN (p95
    end-to-end latency over budget, or frames dropped in this period), OK otherwise. `cause` (from
    `transport_cause`) explains frames that publishers sent and the node never got."""
    errors, warnings = [], []
    period = snap.dropped_in_period
    if period["model_failure"]:
        errors.append(f"model failed on {period['model_failure']} frame(s)")
    if publishers and stale_s > stale_timeout:
        errors.append(f"no frames for {stale_s:.1f} s although {publishers} publisher(s) exist; likely cause: {cause}")
    if period["missed"]:
        warnings.append(f"{period['missed']} frame(s) sent but never received; likely cause: {cause}")
    if period["superseded"]:
        warnings.append(
            f"{period['superseded']} frame(s) superseded by newer ones while the model was busy ({snap.rate_text}); "
            "a lower camera rate, input.max_side or a smaller model keeps up"
        )
    if period["unpaired"]:
        warnings.append(
            f"{period['unpaired']} frame(s) of a stereo pair found no partner within stereo.max_skew: are the two "
            "cameras synchronised, and stamped alike?"
        )
    if period["bad_input"]:
        warnings.append(f"{period['bad_input']} bad image(s) dropped: {snap.last_error}")
    p95 = snap.latency[END_TO_END].p95
    recent = snap.seconds_since_last_processed is not None and snap.seconds_since_last_processed <= RATE_SPAN_NS / 1e9
    if recent and p95 > budget_ms:  # the window counts frames: an old one's latency is no news
        warnings.append(f"p95 latency {p95:.1f} ms over the {budget_ms:g} ms budget")
    if errors:
        snap.level, snap.message = Level.ERROR, "; ".join(errors + warnings)
    elif warnings:
        snap.level, snap.message = Level.WARN, "; ".join(warnings)
    else:
        snap.level, snap.message = Level.OK, "OK"
    return snap
