"""Every feature extractor the package serves, by model name.

Each module of this package registers its model names with `register` when it is imported; `names()` imports
them all. The node's `model` parameter, `extract`, `bag process` and `evaluate` take their choices from
`names()` and build through `build`, so adding an extractor is one new module here and nothing else.

This module is the registry and sits low: it needs the result type (`features`), the device rules
(`devices`) and the detector's settings (with `detection.dkd.checked_detection`, the one check of them and of
`max_side` every extractor makes), never an extractor. The families (the modules beside it) build on the
extractor and the weights loading and register into it; the weights loading asks it only whether a name is known.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Protocol

import numpy as np
import torch

from ..detection.dkd import DetectorConfig, checked_detection
from ..devices import resolve_device
from ..features import Color, Features
from ..memory import keep_freed_memory


class FeatureExtractor(Protocol):
    """What the pipeline, the CLIs and the evaluation need of an extractor."""

    device: torch.device
    detector: DetectorConfig  # swapped by FramePipeline.reconfigure between frames
    max_side: int  # the default of a call's `max_side`
    descriptor_dim: int

    def __call__(
        self, image: np.ndarray, color: Color = "rgb", max_side: int | None = None, mask: np.ndarray | None = None
    ) -> Features:
        """`max_side`: this call's downscaling (several cameras share one extractor); None: `self.max_side`.
        `mask`: H x W like the image, zero where no keypoint may lie (`detection.selection`); ValueError when its
        size differs from the image's."""
        ...


@dataclass(frozen=True)
class Options:
    """The pipeline settings every extractor is built from; one family may refuse what it cannot do."""

    weights: str | None = None  # None: the weights bundled for the model
    device: str = "auto"
    half: bool = False
    detector: DetectorConfig | None = None
    max_side: int = 0
    runtime: str = "torch"


@dataclass(frozen=True)
class Registration:
    name: str
    summary: str  # one line for help texts and the README's model table
    descriptor_dim: int
    build: Callable[[Options], FeatureExtractor]


_REGISTRY: dict[str, Registration] = {}


def register(registration: Registration) -> None:
    if registration.name in _REGISTRY:
        raise ValueError(f"extractor {registration.name!r} is registered twice")
    _REGISTRY[registration.name] = registration


@cache
def _load_modules() -> None:
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


def names() -> tuple[str, ...]:
    """Every model name, in registration order (module name order, then each module's own order)."""
    _load_modules()
    return tuple(_REGISTRY)


def registration(name: str) -> Registration:
    _load_modules()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(_REGISTRY)}") from None


def torch_float32(name: str, options: Options) -> tuple[torch.device, DetectorConfig, int]:
    """(device, detector, max_side) of a model that runs in torch in float32 only; a ValueError naming what it
    cannot do for any other option."""
    if options.runtime != "torch":
        raise ValueError(f"{name} runs with runtime torch only, not {options.runtime}")
    if options.half:
        raise ValueError(f"{name} runs in float32 only (half: false)")
    return resolve_device(options.device), checked_detection(options.detector, options.max_side), options.max_side


def build(name: str, options: Options | None = None) -> FeatureExtractor:
    """The extractor for a model name; ValueError (or WeightsError) when the options cannot work for it."""
    keep_freed_memory()  # frame after frame, the same large buffers: keep them instead of faulting them in again
    return registration(name).build(options or Options())
