"""MD-Net's losses trained on alike-t's network: the same ALNet, DKD and descriptor sampling as ALIKE at run
time (so ONNX export and every runtime apply), only the weights differ."""

from __future__ import annotations

from functools import partial

from ..model.alnet import ALNET_MODELS, MDNET_MODEL
from . import Registration, register
from .alike import build

SUMMARY = "MD-Net's losses on alike-t's network"
register(Registration(MDNET_MODEL, SUMMARY, ALNET_MODELS[MDNET_MODEL].dim, partial(build, MDNET_MODEL)))
