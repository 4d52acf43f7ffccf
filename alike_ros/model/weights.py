"""Building ALNet from weight files: the project's bundled weights, its training checkpoints, or upstream ones."""

from __future__ import annotations

import warnings
from importlib import resources
from pathlib import Path

import torch

from .alnet import ALNet, model_config


class WeightsError(RuntimeError):
    """A weights file is missing, unreadable or does not fit the chosen model."""


def bundled_weights_path(model: str) -> Path:
    """Where the package keeps the weights the project trained for `model` (the file may not exist)."""
    from ..__main__ import shadowed_package  # a clone run from its parent folder: say so, not "no weights"

    if problem := shadowed_package():
        raise WeightsError(problem)
    from ..extractors import registration  # here: the extractors import this module

    registration(model)  # an unknown name is a ValueError naming the choices
    return Path(str(resources.files("alike_ros") / "weights" / f"{model}.pth"))


def safe_load(path: str | Path, what: str = "weights file") -> object:
    """torch.load restricted to tensors and plain data (weights_only=True): unpickling anything else could
    run arbitrary code, so such files are refused like damaged ones, with a one-line error of our own."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{what} {path} does not exist")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of foreign files
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torch raises many kinds for a corrupt or foreign file
        raise WeightsError(
            f"cannot read {what} {path}: not a PyTorch {what}, or damaged "
            "(only tensors and plain data are loaded, never other Python objects)"
        ) from None  # torch's message would advise loading it unsafely


def _state_dict_from(obj: object, path: Path) -> dict[str, torch.Tensor]:
    # Upstream files are plain state_dicts; our training checkpoints wrap them with metadata.
    if isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} does not hold an ALNet state_dict")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    return _state_dict_from(safe_load(path), path)


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
