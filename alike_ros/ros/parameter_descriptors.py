"""The parameter table (alike_ros.parameter_table) in ROS terms: the descriptors that let rclpy reject
out-of-range values itself. The QoS profiles the reliability parameters name are in `qos`."""

from __future__ import annotations

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from ..parameter_table import Param


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
