"""The training tasks by model name. Each family's module registers its task here when imported (`register`);
the trainer finds a model's task through `task_for` and imports no family itself, and no family imports the
trainer: the pieces they share sit below both (`train_config`, `metrics`, `data`)."""

from __future__ import annotations

import importlib
from functools import cache
from pathlib import Path
from typing import Protocol

import torch

from .train_config import TrainConfig

# the modules of this package that register a task (imported on the first `task_for`)
TASK_MODULES = ("alike", "keynet", "mdnet", "residual", "unsuperpoint")


class Task(Protocol):
    """What one family of models brings to the training loop; everything else (data, schedule, checkpoints,
    logs, resume) is shared."""

    def build(self, cfg: TrainConfig) -> torch.nn.Module: ...

    def losses(self, net: torch.nn.Module, batch: dict[str, torch.Tensor], cfg: TrainConfig) -> dict[str, torch.Tensor]:
        """Every loss of a batch, "total" the one to minimise."""

    def validate(
        self, net: torch.nn.Module, pairs: list[dict[str, torch.Tensor]], cfg: TrainConfig
    ) -> dict[str, float]:
        """Metrics on held-out pairs; "correct_matches" selects the best checkpoint."""

    def load(self, path: str | Path, cfg: TrainConfig) -> torch.nn.Module:
        """The network of a checkpoint or exported weights file, for --validate."""

    def export_fields(self, checkpoint: dict) -> dict:
        """Fields the exported weights file needs besides state_dict, model, step and note."""

    # Optional: prepare(net, data, cfg) sets up the network of a new run (not a resumed one) before its first step.


_TASKS: dict[str, type] = {}
_DEFAULT: list[type] = []  # the task of a model no family claims (ALIKE's: its network refuses unknown names)


def register(task: type, *models: str, default: bool = False) -> None:
    """`task` trains `models`; `default`: and every model no other task names."""
    for model in models:
        if model in _TASKS:
            raise ValueError(f"training task for {model!r} is registered twice")
        _TASKS[model] = task
    if default:
        if _DEFAULT:
            raise ValueError("two default training tasks")
        _DEFAULT.append(task)


@cache
def _load_modules() -> None:
    for name in TASK_MODULES:
        importlib.import_module(f"{__package__}.{name}")


def task_for(model: str) -> Task:
    _load_modules()
    return _TASKS.get(model, _DEFAULT[0])()
