"""The node's parameters: one table with defaults, descriptions and ranges, and one validator.

The descriptors let rclpy reject out-of-range values on its own; `validate` repeats every check (and adds
the ones a descriptor cannot express) so start-up, live changes and tests all give the same reasons.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from ..detection.dkd import DetectorConfig
from ..extractor import resolve_device
from ..matching.matcher import MatcherConfig
from ..model.alnet import model_config

Value = bool | int | float | str


@dataclass(frozen=True)
class Param:
    name: str
    default: Value
    description: str
    range: tuple[float, float, float] | None = None  # inclusive bounds and step (0: continuous)
    choices: tuple[str, ...] = ()
    read_only: bool = False

    def descriptor(self) -> ParameterDescriptor:
        desc = ParameterDescriptor(name=self.name, description=self.description, read_only=self.read_only)
        if self.choices:
            desc.additional_constraints = f"one of: {', '.join(self.choices)}"
        if self.range and isinstance(self.default, int) and not isinstance(self.default, bool):
            lo, hi, step = self.range
            desc.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=int(step))]
        elif self.range:
            lo, hi, step = self.range
            desc.floating_point_range = [FloatingPointRange(from_value=lo, to_value=hi, step=step)]
        return desc


RELIABILITY = ("best_effort", "reliable")

PARAMETERS: tuple[Param, ...] = (
    Param("model", "alike-t", "ALIKE variant", choices=("alike-t", "alike-s", "alike-n", "alike-l")),
    Param("weights", "", "weights file; empty: the weights bundled for the model (upstream checkpoints work too)"),
    Param("device", "auto", "auto, cpu, cuda or cuda:N"),
    Param("half", False, "half-precision inference (CUDA only)"),
    Param("detector.window_size", 5, "NMS and sub-pixel refinement window (odd)", range=(3, 31, 2)),
    Param("detector.top_k", -1, "keep the k best keypoints; <= 0: all above the threshold", range=(-1, 100_000, 1)),
    Param("detector.score_threshold", 0.2, "minimum detector score of a keypoint, in [0, 1)", range=(0.0, 1.0, 0.0)),
    Param("detector.max_keypoints", 2000, "cap on the keypoints of one image", range=(1, 100_000, 1)),
    Param("detector.border", 2, "pixels at the image border where no keypoint is kept", range=(0, 256, 1)),
    Param(
        "input.transport",
        "raw",
        "raw: subscribe `image`; compressed: `image/compressed`",
        choices=("raw", "compressed"),
    ),
    Param(
        "input.max_side",
        0,
        "downscale so the longer side is at most this before the network; 0: native size",
        range=(0, 16_384, 1),
    ),
    Param(
        "input.qos.reliability",
        "auto",
        "input QoS reliability; auto: reliable when every publisher is, best effort otherwise",
        choices=("auto", *RELIABILITY),
    ),
    Param("input.qos.depth", 1, "input QoS history depth (keep last)", range=(1, 100, 1)),
    Param("output.qos.reliability", "reliable", "output QoS reliability", choices=RELIABILITY, read_only=True),
    Param("output.qos.depth", 5, "output QoS history depth (keep last)", range=(1, 1000, 1), read_only=True),
    Param(
        "output.vins_layout",
        "none",
        "publish `features_vins` in this layout (needs `camera_info`); none: off",
        choices=("none", "vins_mono", "vins_fusion"),
    ),
    Param(
        "output.descriptor_type",
        "float32",
        "`features` descriptor field: float32, or uint8 (quantised, 16 + D instead of 16 + 4 D bytes per keypoint)",
        choices=("float32", "uint8"),
    ),
    Param("matching.enabled", True, "match each frame to the previous one; off: no `matches`, every track new"),
    Param("matching.min_similarity", 0.8, "minimum cosine similarity of a match", range=(-1.0, 1.0, 0.0)),
    Param("matching.mutual", True, "keep only mutual nearest neighbours"),
    Param("matching.ratio", 1.0, "Lowe's ratio test on descriptor distances; 1.0: off", range=(0.01, 1.0, 0.0)),
    Param("debug_image.enabled", True, "draw `debug_image` (only while someone subscribes)"),
    Param("diagnostics.period", 1.0, "seconds between /diagnostics messages (node clock)", range=(0.05, 3600.0, 0.0)),
    Param(
        "diagnostics.latency_budget_ms",
        100.0,
        "WARN when the p95 end-to-end latency exceeds this",
        range=(0.1, 1e6, 0.0),
    ),
    Param("diagnostics.window", 300, "frames the latency figures are computed over", range=(1, 100_000, 1)),
    Param(
        "diagnostics.stale_timeout",
        3.0,
        "ERROR when an image publisher exists but no frame came for this long (s)",
        range=(0.1, 86_400.0, 0.0),
    ),
    Param("warmup_frames", 2, "inferences on a synthetic image after (re)loading the model", range=(0, 100, 1)),
)
DEFAULTS: dict[str, Value] = {p.name: p.default for p in PARAMETERS}
BY_NAME: dict[str, Param] = {p.name: p for p in PARAMETERS}

# Parameters whose change needs a new model, a new subscription, or nothing but the next frame.
MODEL_KEYS = frozenset({"model", "weights", "device", "half", "warmup_frames"})
INPUT_KEYS = frozenset({"input.transport", "input.qos.reliability", "input.qos.depth"})


def detector_config(values: dict[str, Any]) -> DetectorConfig:
    return DetectorConfig(
        window_size=values["detector.window_size"],
        top_k=values["detector.top_k"],
        score_threshold=values["detector.score_threshold"],
        max_keypoints=values["detector.max_keypoints"],
        border=values["detector.border"],
    )


def matcher_config(values: dict[str, Any]) -> MatcherConfig:
    return MatcherConfig(
        min_similarity=values["matching.min_similarity"],
        mutual=values["matching.mutual"],
        ratio=values["matching.ratio"],
    )


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


def _check_one(param: Param, value: Any) -> None:
    if type(value) is not type(param.default):
        raise ValueError(f"{param.name} must be a {type(param.default).__name__}, got {value!r}")
    if param.choices and value not in param.choices:
        raise ValueError(f"{param.name} must be one of {', '.join(param.choices)}; got {value!r}")
    if param.range:
        lo, hi, step = param.range
        if not lo <= value <= hi:
            raise ValueError(f"{param.name} must be in [{lo:g}, {hi:g}], got {value!r}")
        if step and isinstance(value, int) and (value - lo) % step:
            raise ValueError(f"{param.name} must be {lo:g} plus a multiple of {step:g}, got {value}")


def validate(values: dict[str, Any]) -> None:
    """Raise ValueError with the reason the first bad value is bad (values of other names are ignored)."""
    for name, value in values.items():
        if name in BY_NAME:
            _check_one(BY_NAME[name], value)
    model_config(values["model"])
    if values["weights"] and not Path(values["weights"]).expanduser().is_file():
        raise ValueError(f"weights file {values['weights']!r} does not exist")
    device = resolve_device(values["device"])
    if values["half"] and device.type != "cuda":
        raise ValueError(f"half precision needs a CUDA device, device {values['device']!r} is {device.type}")
    detector_config(values).validate()
    matcher_config(values).validate()
