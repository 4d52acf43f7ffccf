"""The extractor's parameters by dotted name: the node's parameter table, its YAML file and `bag process --params`.

Names map onto the core configs, whose declarations give defaults, ranges and help: `detector.*` onto
`DetectorConfig`, `matching.*` onto `MatcherConfig`, and model, weights, device, half, runtime, input.max_side,
threads, warmup_frames, warmup_sizes and matching.enabled onto `PipelineConfig`. The others concern the live node
only (transport, QoS, outputs, diagnostics) and are declared here. No ROS import: the bag tool and the tests read
the same table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .config import Spec, Value, settings_of
from .detection.dkd import DetectorConfig
from .matching.matcher import MatcherConfig
from .matching.stereo import StereoConfig
from .pipeline import REBUILD_SETTINGS, PipelineConfig


@dataclass(frozen=True)
class Param:
    name: str
    spec: Spec
    read_only: bool = False  # set at start only

    @property
    def default(self) -> Value:
        return self.spec.default


# parameter name -> PipelineConfig field
PIPELINE_FIELDS = {
    "model": "model",
    "weights": "weights",
    "device": "device",
    "half": "half",
    "runtime": "runtime",
    "input.max_side": "max_side",
    "input.mask": "mask",
    "threads": "threads",
    "warmup_frames": "warmup_frames",
    "warmup_sizes": "warmup_sizes",
    "matching.enabled": "matching",
}
RELIABILITY = ("best_effort", "reliable")
_pipeline = settings_of(PipelineConfig)

PARAMETERS: tuple[Param, ...] = (
    Param("model", _pipeline["model"]),
    Param("weights", _pipeline["weights"]),
    Param("device", _pipeline["device"]),
    Param("half", _pipeline["half"]),
    Param("runtime", _pipeline["runtime"]),
    *(Param(f"detector.{name}", spec) for name, spec in settings_of(DetectorConfig).items()),
    Param(
        "cameras",
        Spec(
            "",
            "the cameras of this node, comma-separated names (e.g. left,right): camera N subscribes N/image and "
            "publishes N/features, N/matches, ... with its own tracks and diagnostics, all through one model; "
            "empty: one camera on `image`, `features`, ...",
        ),
        read_only=True,
    ),
    Param(
        "workers",
        Spec(
            2,
            "threads that process frames, sharing the model: up to one per camera (a stereo pair counts as one); "
            "each camera's frames stay in order",
            range=(1, 64),
        ),
        read_only=True,
    ),
    Param(
        "stereo.pairs",
        Spec(
            "",
            "stereo pairs among `cameras`, LEFT:RIGHT comma-separated (e.g. left:right): their frames are paired by "
            "stamp, processed together and matched left to right on `<LEFT>/stereo_matches`; empty: none",
        ),
        read_only=True,
    ),
    Param(
        "stereo.max_skew",
        Spec(
            0.0, "largest stamp difference of a left and a right frame that pair, s; 0: equal stamps", range=(0.0, 1.0)
        ),
    ),
    *(Param(f"stereo.{name}", spec) for name, spec in settings_of(StereoConfig).items()),
    Param(
        "input.transport",
        Spec("raw", "raw: subscribe `image`; compressed: `image/compressed`", choices=("raw", "compressed")),
    ),
    Param("input.max_side", _pipeline["max_side"]),
    Param("input.mask", _pipeline["mask"]),
    Param(
        "input.qos.reliability",
        Spec(
            "auto",
            "input QoS reliability; auto: reliable when every publisher of the topic is, best effort otherwise",
            choices=("auto", *RELIABILITY),
        ),
    ),
    Param("input.qos.depth", Spec(1, "input QoS history depth (keep last)", range=(1, 100))),
    Param("output.qos.reliability", Spec("reliable", "output QoS reliability", choices=RELIABILITY), read_only=True),
    Param("output.qos.depth", Spec(5, "output QoS history depth (keep last)", range=(1, 1000)), read_only=True),
    Param(
        "output.vins_layout",
        Spec(
            "none",
            "publish `features_vins` in this layout (needs `camera_info`); none: off",
            choices=("none", "vins_mono", "vins_fusion"),
        ),
    ),
    Param(
        "output.descriptor_type",
        Spec(
            "float32",
            "`features` descriptor field: float32, or uint8 (quantised, 16 + D instead of 16 + 4D bytes per keypoint)",
            choices=("float32", "uint8"),
        ),
    ),
    Param("matching.enabled", _pipeline["matching"]),
    *(Param(f"matching.{name}", spec) for name, spec in settings_of(MatcherConfig).items()),
    Param("debug_image.enabled", Spec(True, "draw `debug_image` (only while someone subscribes)")),
    Param(
        "diagnostics.period",
        Spec(1.0, "seconds between /diagnostics messages (node clock)", range=(0.05, 3600.0)),
    ),
    Param(
        "diagnostics.latency_budget_ms",
        Spec(100.0, "WARN when the p95 end-to-end latency exceeds this", range=(0.1, 1e6)),
    ),
    Param("diagnostics.window", Spec(300, "frames the latency figures are computed over", range=(1, 100_000))),
    Param(
        "diagnostics.stale_timeout",
        Spec(3.0, "ERROR when an image publisher exists but no frame came for this long (s)", range=(0.1, 86_400.0)),
    ),
    Param("threads", _pipeline["threads"]),
    Param("warmup_frames", _pipeline["warmup_frames"]),
    Param("warmup_sizes", _pipeline["warmup_sizes"]),
)
DEFAULTS: dict[str, Value] = {p.name: p.default for p in PARAMETERS}
BY_NAME: dict[str, Param] = {p.name: p for p in PARAMETERS}

# Parameters whose change needs a new model, or a new input subscription; the others apply from the next frame.
MODEL_KEYS = frozenset(name for name, f in PIPELINE_FIELDS.items() if f in REBUILD_SETTINGS)
INPUT_KEYS = frozenset({"input.transport", "input.qos.reliability", "input.qos.depth"})


def pipeline_config(values: dict[str, Any]) -> PipelineConfig:
    """The core config the parameter values describe (not validated: see `validate`)."""
    return PipelineConfig(
        **{f: values[name] for name, f in PIPELINE_FIELDS.items()},
        detector=DetectorConfig(**{name: values[f"detector.{name}"] for name in settings_of(DetectorConfig)}),
        matcher=MatcherConfig(**{name: values[f"matching.{name}"] for name in settings_of(MatcherConfig)}),
    )


CAMERA_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*(/[A-Za-z][A-Za-z0-9_]*)*")


def camera_names(text: str) -> list[str]:
    """The `cameras` parameter as a list: [""] (one camera, the node's own topics) when empty; ValueError names a
    name that is not a relative ROS namespace, or one given twice."""
    if not text.strip():
        return [""]
    names = [name.strip() for name in text.split(",")]
    for name in names:
        if not CAMERA_NAME.fullmatch(name):
            raise ValueError(
                f"cameras: {name!r} is not a camera name (a relative ROS namespace: letters, digits, _ and /, "
                "starting with a letter)"
            )
    if duplicates := sorted({name for name in names if names.count(name) > 1}):
        raise ValueError(f"cameras: {', '.join(duplicates)} given more than once")
    return names


def stereo_pairs(text: str, cameras: list[str]) -> list[tuple[str, str]]:
    """The `stereo.pairs` parameter as (left, right) names; ValueError names a pair that is not two different
    cameras of `cameras`, or a camera in two pairs."""
    pairs = []
    for entry in filter(None, (e.strip() for e in text.split(","))):
        left, colon, right = (part.strip() for part in entry.partition(":"))
        if not colon or not left or not right or left == right:
            raise ValueError(f"stereo.pairs: {entry!r} is not LEFT:RIGHT, two different cameras")
        if unknown := [name for name in (left, right) if name not in cameras]:
            raise ValueError(f"stereo.pairs: {', '.join(unknown)} not in cameras ({', '.join(filter(None, cameras))})")
        pairs.append((left, right))
    used = [name for pair in pairs for name in pair]
    if twice := sorted({name for name in used if used.count(name) > 1}):
        raise ValueError(f"stereo.pairs: {', '.join(twice)} in more than one pair")
    return pairs


# What one camera of several may set for itself, as `<camera>.input.transport`, `<camera>.input.max_side` and
# `<camera>.input.mask` (a camera name's `/` as `.`): unset, the node's value applies.
CAMERA_OVERRIDES: dict[str, Spec] = {
    "input.transport": Spec(
        "", "this camera's input.transport; empty: the node's", choices=("", *BY_NAME["input.transport"].spec.choices)
    ),
    "input.max_side": Spec(
        -1, "this camera's input.max_side; -1: the node's", range=(-1, _pipeline["max_side"].range[1])
    ),
    "input.mask": Spec("", "this camera's input.mask; empty: the node's"),
}


def _camera_prefix(camera: str) -> str:
    """How a camera's own parameters begin: its name with `/` as `.` (parameter names nest by `.`)."""
    return camera.replace("/", ".") + "."


def camera_parameters(cameras: list[str]) -> tuple[Param, ...]:
    """The per-camera parameters of these cameras (none for the single unnamed camera)."""
    return tuple(
        Param(_camera_prefix(name) + key, spec) for name in cameras if name for key, spec in CAMERA_OVERRIDES.items()
    )


def camera_values(values: dict[str, Any], camera: str) -> dict[str, Any]:
    """The values as they apply to one camera: the node's, with the camera's own overrides where set."""
    own = {key: values.get(_camera_prefix(camera) + key, spec.default) for key, spec in CAMERA_OVERRIDES.items()}
    return {**values, **{key: value for key, value in own.items() if value != CAMERA_OVERRIDES[key].default}}


def camera_changes(changed: set[str], camera: str) -> set[str]:
    """The parameter names whose change concerns one camera, its overrides named as the node's settings."""
    prefix = _camera_prefix(camera)
    return {name.removeprefix(prefix) if camera and name.startswith(prefix) else name for name in changed}


def stereo_config(values: dict[str, Any]) -> StereoConfig:
    return StereoConfig(**{name: values[f"stereo.{name}"] for name in settings_of(StereoConfig)})


def validate(values: dict[str, Any]) -> None:
    """Raise ValueError with the reason the first bad value is bad (values of other names are ignored).

    Types are exact, as a ROS parameter's are: 1 is not a valid float parameter, 1.0 is."""
    cameras = camera_names(values["cameras"])
    known = BY_NAME | {p.name: p for p in camera_parameters(cameras)}
    for name, value in values.items():
        if name in known:
            param = known[name]
            if type(value) is not type(param.default):
                raise ValueError(f"{name} must be a {type(param.default).__name__}, got {value!r}")
            param.spec.check(name, value)
    stereo_pairs(values["stereo.pairs"], cameras)
    stereo_config(values).validate()
    for camera in cameras:
        pipeline_config(camera_values(values, camera)).validate()


@dataclass
class Settings:
    """Parameter values by dotted name, complete and validated: what a node with this params file would use."""

    values: dict[str, Any]

    @classmethod
    def from_params(cls, params: dict[str, Any] | None = None) -> Settings:
        """Defaults overridden by `params`; unknown names and bad values raise ValueError."""
        # use_sim_time and QoS overrides are rclpy's own parameters, valid in any node's file
        known = {k: v for k, v in (params or {}).items() if k != "use_sim_time" and not k.startswith("qos_overrides.")}
        text = known.get("cameras", DEFAULTS["cameras"])
        cameras = camera_names(text) if isinstance(text, str) else []  # not a string: `validate` says so
        if unknown := sorted(set(known) - set(BY_NAME) - {p.name for p in camera_parameters(cameras)}):
            raise ValueError(f"unknown parameters {', '.join(unknown)}")
        values = {**DEFAULTS, **known}
        validate(values)
        return cls(values)

    @property
    def pipeline(self) -> PipelineConfig:
        return pipeline_config(self.values)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def read_params(path: str | Path) -> dict[str, Any]:
    """Dotted names to values, merged over every `<node>: ros__parameters:` section of a params file in file
    order (as a node matching all of them would see them); nested or dotted keys."""
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read params file {path}: {exc}") from exc
    sections = [v["ros__parameters"] for v in (doc or {}).values() if isinstance(v, dict) and "ros__parameters" in v]
    if not sections:
        raise ValueError(f"{path} has no `<node>: ros__parameters:` section")
    params: dict[str, Any] = {}
    for section in sections:
        params.update(flatten(section or {}))
    return params
