"""The parameter table (alike_ros.parameters) in ROS terms: descriptors that let rclpy reject out-of-range values
itself, and the QoS profiles the reliability parameters name."""

from __future__ import annotations

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from ..parameters import Param


def descriptor(param: Param) -> ParameterDescriptor:
    spec = param.spec
    desc = ParameterDescriptor(name=param.name, description=spec.help, read_only=param.read_only)
    if spec.choices:
        desc.additional_constraints = f"one of: {', '.join(spec.choices)}"
    if spec.range and isinstance(spec.default, int) and not isinstance(spec.default, bool):
        lo, hi = spec.range
        desc.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=spec.step or 1)]
    elif spec.range:
        lo, hi = spec.range
        desc.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
    return desc


def input_reliability(setting: str, offered: list[str]) -> str:
    """The reliability to subscribe with, given what each publisher offers: `auto` follows the publishers.
    Reliable only when every publisher is (a best-effort one would not match a reliable subscription); best
    effort when there is none yet, since it matches every publisher."""
    if setting != "auto":
        return setting
    return "reliable" if offered and all(r == "reliable" for r in offered) else "best_effort"


def qos_profile(reliability: str, depth: int) -> QoSProfile:
    """Keep-last, volatile; best effort is the sensor-data profile's reliability."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.BEST_EFFORT if reliability == "best_effort" else ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )
