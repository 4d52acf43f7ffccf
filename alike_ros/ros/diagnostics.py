"""The node's figures (alike_ros.monitoring) as a diagnostic_msgs/DiagnosticStatus."""

from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from ..monitoring import DROP_REASONS, Snapshot


def to_status(snap: Snapshot, name: str, hardware_id: str) -> DiagnosticStatus:
    """One DiagnosticStatus; keys are dotted names, latencies in ms, rates in Hz."""
    values = {
        "frames.received": snap.received,
        "frames.processed": snap.processed,
        "frames.dropped": snap.dropped_total,
        **{f"frames.dropped.{reason}": count for reason, count in snap.dropped.items()},
        "matching.guided_fallbacks": snap.guided_fallbacks,
        "rate.input_hz": f"{snap.input_rate:.2f}",
        "rate.processing_hz": f"{snap.processing_rate:.2f}",
        "seconds_since_last_frame": ""
        if snap.seconds_since_last_frame is None
        else f"{snap.seconds_since_last_frame:.3f}",
    }
    for stage, summary in snap.latency.items():
        values[f"latency.{stage}.count"] = summary.count
        for stat in ("mean", "p50", "p95", "max"):
            values[f"latency.{stage}.{stat}_ms"] = f"{getattr(summary, stat):.3f}"
    values["last_error"] = snap.last_error
    values.update(snap.extra)
    return DiagnosticStatus(
        level=bytes([snap.level]),
        name=name,
        message=snap.message,
        hardware_id=hardware_id,
        values=[KeyValue(key=k, value=str(v)) for k, v in values.items()],
    )


def frame_counters(status: DiagnosticStatus) -> dict[str, int]:
    """The frame counts of a status `to_status` wrote: received, processed, and dropped by reason."""
    values = {kv.key: kv.value for kv in status.values}
    counts = {"received": values["frames.received"], "processed": values["frames.processed"]}
    counts |= {reason: values[f"frames.dropped.{reason}"] for reason in DROP_REASONS}
    return {name: int(value) for name, value in counts.items()}


def in_flight(counts: dict[str, int]) -> int:
    """Frames of `frame_counters` received but neither processed nor dropped yet (missed ones never arrived)."""
    dropped = sum(n for reason, n in counts.items() if reason not in ("received", "processed", "missed"))
    return counts["received"] - counts["processed"] - dropped


def stage_medians(values: dict[str, str]) -> dict[str, float]:
    """The median ms of each stage in the key/value pairs of a status `to_status` wrote, in the status's order."""
    prefix, suffix = "latency.", ".p50_ms"
    return {
        key.removeprefix(prefix).removesuffix(suffix): float(value)
        for key, value in values.items()
        if key.startswith(prefix) and key.endswith(suffix)
    }
