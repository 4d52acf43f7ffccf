"""The settings of a training run (`TrainConfig`, every family's sections) and how they are read from a dict."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..detection.dkd import DetectorConfig
from ..model.keynet import KeyNetConfig
from ..model.residual import ResidualConfig
from ..model.unsuperpoint import UnsuperPointConfig
from .data import DataConfig
from .losses import LossConfig
from .mdnet_losses import MdnetConfig
from .msip import MsipConfig
from .real_pairs import RealConfig
from .unsuperpoint_losses import UnsuperPointLossConfig


@dataclass
class TrainConfig:
    model: str = "alike-t"
    out_dir: str = "runs/alike-t"
    seed: int = 0
    threads: int = 2
    # CPU speed: for alike-t's few channels, oneDNN convolutions in channels-last layout measured about 2x faster
    # than the default NCHW ones in training (forward + backward)
    channels_last: bool = True
    mkldnn: bool = True
    steps: int = 1000  # optimizer steps
    batch_size: int = 2  # pairs per forward pass
    accumulate: int = 2  # forward passes per optimizer step
    lr: float = 1e-3
    warmup_steps: int = 100
    final_lr_ratio: float = 0.1  # cosine decay after the warm-up, down to lr * this at the last step
    grad_clip: float = 1.0  # max gradient norm; early from-scratch steps can spike
    top_k: int = 400  # keypoints per image during training
    # soft DKD with the detector's own settings and defaults
    window_size: int = DetectorConfig.window_size
    temperature: float = DetectorConfig.temperature
    border: int = DetectorConfig.border
    log_every: int = 5
    val_every: int = 50
    checkpoint_seconds: float = 300.0
    val_top_k: int = 400
    val_match_px: float = 3.0  # a keypoint repeats / a match is correct within this many pixels
    # the validation metric whose highest value is kept as best.pt (any key of val.csv)
    best_metric: str = "correct_matches"
    # a weights file exported by `--export` that a new run starts from (fresh optimizer; --init overrides it)
    init: str = ""
    # BatchNorm normalises with its running statistics in training too, and keeps them: for fine-tuning, where
    # those of the initial weights (a whole run's) beat a 2-image batch's; they alone moved the real pose figure
    # (TRAINING.md, "Real viewpoint change")
    freeze_batchnorm: bool = False
    data: DataConfig = field(default_factory=DataConfig)
    real: RealConfig = field(default_factory=RealConfig)  # real pairs (Strecha), for ALIKE runs only
    loss: LossConfig = field(default_factory=LossConfig)
    residual: ResidualConfig = field(default_factory=ResidualConfig)  # the network of sift-residual runs
    keynet: KeyNetConfig = field(default_factory=KeyNetConfig)  # the network of keynet runs
    msip: MsipConfig = field(default_factory=MsipConfig)  # the loss of keynet runs
    mdnet: MdnetConfig = field(default_factory=MdnetConfig)  # the losses of mdnet runs
    unsuperpoint: UnsuperPointConfig = field(default_factory=UnsuperPointConfig)  # the network of unsuperpoint runs
    unsuperpoint_loss: UnsuperPointLossConfig = field(default_factory=UnsuperPointLossConfig)


def from_dict(cls: type, values: dict) -> object:
    """Build a (nested) dataclass from a dict such as parsed YAML; unknown keys are errors, lists become tuples."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} settings: {sorted(unknown)}")
    kwargs = {}
    defaults = cls()
    for name, value in values.items():
        current = getattr(defaults, name)
        if dataclasses.is_dataclass(current):
            value = from_dict(type(current), value or {})
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)
