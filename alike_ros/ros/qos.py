"""The QoS the reliability and depth parameters (`input.qos.*`, `output.qos.*`) name: the reliability to subscribe
with, given the publishers, and the profile for a reliability and depth."""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy


def input_reliability(setting: str, offered: list[str]) -> str:
    """The reliability to subscribe with, given what each publisher offers: `auto` follows the publishers.
    Reliable only when every publisher is (a best-effort one would not match a reliable subscription); best
    effort when there is none yet, since it matches every publisher."""
    if setting != "auto":
        return setting
    return "reliable" if offered and all(r == "reliable" for r in offered) else "best_effort"


def profile(reliability: str, depth: int) -> QoSProfile:
    """Keep-last, volatile; best effort is the sensor-data profile's reliability."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.BEST_EFFORT if reliability == "best_effort" else ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )
