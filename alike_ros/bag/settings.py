"""Extractor and matcher settings from the node's params YAML (config/extractor.yaml format).

Accepts `/**: ros__parameters: {...}` and `<node name>: ros__parameters: {...}` sections, nested or dotted
keys; every section is merged in file order, as a node matching all of them would see them. Defaults and
validation are the node's own (`alike_ros.ros.params`), so offline processing and the live node agree.
Parameters that only concern the live node (QoS, diagnostics, transport) are validated and then unused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..extractor import Extractor
from ..matching.matcher import Matcher
from ..matching.tracker import Tracker
from ..ros.params import BY_NAME, DEFAULTS, detector_config, matcher_config, validate


@dataclass
class Settings:
    """The node's parameter values by dotted name; builds the extractor and trackers they describe."""

    values: dict[str, Any]

    @classmethod
    def from_params(cls, params: dict[str, Any] | None = None) -> Settings:
        """Node defaults overridden by `params`; unknown names and bad values raise ValueError."""
        # use_sim_time and QoS overrides are rclpy's own parameters, valid in any node's file
        known = {k: v for k, v in (params or {}).items() if k != "use_sim_time" and not k.startswith("qos_overrides.")}
        if unknown := sorted(set(known) - set(BY_NAME)):
            raise ValueError(f"unknown parameters {', '.join(unknown)}")
        values = {**DEFAULTS, **known}
        validate(values)
        return cls(values)

    @property
    def matching_enabled(self) -> bool:
        return bool(self.values["matching.enabled"])

    def extractor(self) -> Extractor:
        v = self.values
        return Extractor(
            v["model"], v["weights"] or None, v["device"], v["half"], detector_config(v), v["input.max_side"]
        )

    def tracker(self, extractor: Extractor) -> Tracker:
        return Tracker(Matcher(matcher_config(self.values), extractor.device))


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
    """Dotted parameter names to values, merged over every `ros__parameters` section of the file."""
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
