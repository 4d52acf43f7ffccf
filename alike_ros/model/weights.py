"""Building ALNet from weight files: the project's bundled weights, its training checkpoints, or upstream ones."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch

from .alnet import ALNet, model_config


class WeightsError(RuntimeError):
    """A weights file is missing, unreadable or does not fit the chosen model."""


def bundled_weights_path(model: str) -> Path:
    """Where the package keeps the weights the project trained for `model` (the file may not exist)."""
    model_config(model)
    return Path(str(resources.files("alike_ros") / "weights" / f"{model}.pth"))


def _state_dict_from(obj: object, path: Path) -> dict[str, torch.Tensor]:
    # Upstream files are plain state_dicts; our training checkpoints wrap them with metadata.
    if isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} does not hold an ALNet state_dict")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a corrupt or foreign file
        raise WeightsError(f"cannot read weights file {path}: {exc}") from exc
    return _state_dict_from(obj, path)


def load_model(model: str, weights: str | Path | None = None) -> ALNet:
    """ALNet for `model` in eval mode, with `weights` (a path) or, when empty, the bundled weights."""
    net = ALNet(model_config(model))
    if weights:
        path = Path(weights)
    else:
        path = bundled_weights_path(model)
        if not path.is_file():
            raise WeightsError(
                f"no bundled weights for {model}: this package ships trained weights only for some variants; "
                f"pass a weights file (e.g. an upstream ALIKE checkpoint {model}.pth)"
            )
    state = load_state_dict(path)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{path} does not fit {model}: {exc}") from exc
    return net.eval()
