"""ALIKE (Zhao et al. 2022): the four ALNet variants, each with DKD detection and sub-pixel descriptors."""

from __future__ import annotations

from functools import partial

from ..extractor import Extractor
from ..model.alnet import MODEL_CONFIGS
from . import Options, Registration, register


def build(model: str, options: Options) -> Extractor:
    return Extractor(
        model,
        options.weights,
        options.device,
        options.half,
        options.detector,
        options.max_side,
        runtime=options.runtime,
    )


for _name, _cfg in MODEL_CONFIGS.items():
    register(Registration(_name, f"ALIKE {_name.removeprefix('alike-')}", _cfg.dim, partial(build, _name)))
