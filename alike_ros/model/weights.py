"""Building ALNet from weight files: the project's bundled weights, its training checkpoints, or upstream ones."""

from __future__ import annotations

import warnings
from dataclasses import asdict
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from ..install import shadowed_package
from .alnet import ALNet, model_config


class WeightsError(RuntimeError):
    """A weights file is missing, unreadable or does not fit the chosen model."""


def bundled_weights_path(model: str) -> Path:
    """Where the package keeps the weights the project trained for `model` (the file may not exist)."""
    if problem := shadowed_package():  # a clone run from its parent folder: say so, not "no weights"
        raise WeightsError(problem)
    # the registry alone (the extractor families load on first use), imported after that check: from the clone's
    # parent folder, its imports would fail on the repository's config/ folder before saying why
    from ..extractors import registration

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


def load_configured(path: str | Path, model: str, section: str, config_cls: type, network_cls: type) -> nn.Module:
    """In eval mode, the network of a model whose weights carry its config: an exported weights file
    (`{"state_dict", "model", "config": the network's}`, as `saved_config` writes it) or a training checkpoint
    (whose "config" is the whole training config, the network's under `section`)."""
    saved = safe_load(path)
    if not (isinstance(saved, dict) and saved.get("model") == model and isinstance(saved.get("config"), dict)):
        raise WeightsError(f"{path} is not a {model} weights file (exported by `alike_ros train --export`)")
    config = saved["config"].get(section, saved["config"])
    try:
        net = network_cls(config_cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}))
        net.load_state_dict(saved["state_dict"], strict=True)
    except (TypeError, RuntimeError) as exc:
        raise WeightsError(f"{path} does not fit {model}: {exc}") from exc
    return net.eval()


def saved_config(checkpoint: dict, section: str, config_cls: type) -> dict:
    """`{"config": the network's config}` of a training checkpoint (its `section`), as an exported weights file
    stores it: plain lists, no tuples."""
    config = checkpoint.get("config", {}).get(section) or asdict(config_cls())
    return {"config": {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}}
