"""Settings declared once, where they are used: each config dataclass field carries its default, help and range.

A core config (`DetectorConfig`, `MatcherConfig`, `PipelineConfig`) declares every setting with `setting(...)`;
`check` validates an instance against those declarations, and the node's parameter table, its YAML file, the
command lines and the bag tool derive their defaults, ranges and help texts from them (`settings_of`), so no
default or limit exists twice.
"""

from __future__ import annotations

import argparse
from dataclasses import Field, dataclass, field, fields
from typing import Any

Value = bool | int | float | str


@dataclass(frozen=True)
class Spec:
    """What a setting accepts. `range` bounds are inclusive; `step` > 0 asks integers of lo + k * step;
    `below_max` excludes the upper bound (a range a ROS descriptor states as inclusive is checked exactly here)."""

    default: Value
    help: str
    range: tuple[float, float] | None = None
    step: int = 0
    below_max: bool = False
    choices: tuple[str, ...] = ()

    def check(self, name: str, value: Any) -> None:
        """Raise ValueError naming `name` when `value` is not acceptable."""
        expected = type(self.default)
        if type(value) is not expected and not (expected is float and type(value) is int):  # bool is no number here
            raise ValueError(f"{name} must be a {expected.__name__}, got {value!r}")
        if self.choices and value not in self.choices:
            raise ValueError(f"{name} must be one of {', '.join(self.choices)}; got {value!r}")
        if self.range:
            lo, hi = self.range
            if not lo <= value <= hi or (self.below_max and value == hi):
                interval = f"[{lo:g}, {hi:g}{')' if self.below_max else ']'}"
                raise ValueError(f"{name} must be in {interval}, got {value!r}")
            if self.step and (value - lo) % self.step:
                raise ValueError(f"{name} must be {lo:g} plus a multiple of {self.step}, got {value}")


def setting(
    default: Value,
    help: str,
    *,
    range: tuple[float, float] | None = None,
    step: int = 0,
    below_max: bool = False,
    choices: tuple[str, ...] = (),
) -> Any:
    """A dataclass field whose default, help and accepted values are one `Spec`."""
    spec = Spec(default, help, range, step, below_max, choices)
    return field(default=default, metadata={"spec": spec})


def _spec(f: Field) -> Spec | None:
    return f.metadata.get("spec")


def settings_of(config: type | object) -> dict[str, Spec]:
    """The declared settings of a config class (or instance), by field name, in declaration order."""
    return {f.name: spec for f in fields(config) if (spec := _spec(f)) is not None}


def check(config: object) -> None:
    """Validate every declared setting of a config instance (nested configs are checked by their owner)."""
    for f in fields(config):
        if (spec := _spec(f)) is not None:
            spec.check(f.name, getattr(config, f.name))


def add_arguments(parser: argparse.ArgumentParser, config: type, only: tuple[str, ...] = ()) -> None:
    """One `--name` option per declared setting of `config` (or the `only` ones), with its default, type, choices
    and help; `from_arguments` reads them back. Range checks stay with `validate`, which names the setting."""
    for name, spec in settings_of(config).items():
        if only and name not in only:
            continue
        flag = "--" + name.replace("_", "-")
        limits = f"; {spec.range[0]:g}..{spec.range[1]:g}" if spec.range else ""
        help_ = f"{spec.help} (default: %(default)s{limits})"
        if isinstance(spec.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=spec.default, help=help_)
        else:
            choices = spec.choices or None
            parser.add_argument(flag, type=type(spec.default), default=spec.default, choices=choices, help=help_)


def from_arguments(args: argparse.Namespace, config: type) -> dict[str, Value]:
    """The values of the options `add_arguments` made for `config`, by setting name."""
    return {name: getattr(args, name) for name in settings_of(config) if hasattr(args, name)}
