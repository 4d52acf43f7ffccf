"""Training configs live with the training code: one per bundled weights file, named after it; the probes in
research/training/ state only what they change from a base; config/ (installed) holds only the node's files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from alike_ros.training.cli import load_config

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ROOT / "alike_ros" / "training" / "configs"
RESEARCH = ROOT / "research" / "training"
WEIGHTS = sorted((ROOT / "alike_ros" / "weights").glob("*.pth"))
# the later phases of bundled runs, started with --init from the phase before (TRAINING.md)
PHASES = {"alike-s-continued": "alike-s", "mdnet-peaks": "mdnet", "mdnet-centred": "mdnet"}


@pytest.mark.parametrize("path", sorted(PRODUCT.glob("*.yaml")) + sorted(RESEARCH.glob("*.yaml")), ids=lambda p: p.name)
def test_every_training_config_loads(path: Path):
    assert load_config(str(path)).model  # a broken `base:` path or an unknown setting raises


@pytest.mark.parametrize("weights", WEIGHTS, ids=lambda p: p.stem)
def test_every_bundled_weights_file_has_its_config_named_after_it(weights: Path):
    config = PRODUCT / f"{weights.stem}.yaml"
    assert config.is_file(), f"no {config.relative_to(ROOT)} for {weights.name}"
    assert load_config(str(config)).model == torch.load(weights, map_location="cpu", weights_only=True)["model"]


def test_the_product_configs_are_the_bundled_runs_and_their_phases():
    names = {p.stem for p in PRODUCT.glob("*.yaml")}
    assert names == {w.stem for w in WEIGHTS} | set(PHASES)
    for phase, first in PHASES.items():
        assert yaml.safe_load((PRODUCT / f"{phase}.yaml").read_text())["base"] == f"{first}.yaml"


@pytest.mark.parametrize("path", sorted(RESEARCH.glob("*.yaml")), ids=lambda p: p.name)
def test_a_probe_config_states_only_what_it_changes(path: Path):
    settings = yaml.safe_load(path.read_text())
    assert "base" in settings, f"{path.name} is a full copy; give it a base"
    assert load_config(str(path)) != load_config(str(path.parent / settings["base"]))


def test_the_installed_config_folder_holds_only_the_nodes_files():
    for path in (ROOT / "config").glob("*.yaml"):
        settings = yaml.safe_load(path.read_text())
        assert all("ros__parameters" in v for v in settings.values()), f"{path.name} is not a ROS params file"
    assert not list((ROOT / "config").glob("train_*"))
