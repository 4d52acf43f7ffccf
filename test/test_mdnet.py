"""MD-Net's losses on cases with known answers, and `mdnet` as a model: alike-t's network trained with them."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_textured_image, write_textured_photos

from alike_ros import extractors
from alike_ros.model.alnet import ALNet, model_config
from alike_ros.model.weights import WeightsError
from alike_ros.training.cli import main as train_main
from alike_ros.training.mdnet import project_out_shared_direction
from alike_ros.training.mdnet_losses import MdnetConfig, peaky_loss, similarity_loss, triplet_loss
from alike_ros.training.metrics import mean_cosine


def test_similarity_is_zero_for_equal_maps_and_counts_only_patches_the_other_view_sees():
    torch.manual_seed(0)
    scores = torch.rand(1, 1, 64, 64)
    seen = torch.ones(1, 1, 64, 64, dtype=torch.bool)
    assert similarity_loss(scores, scores * 3, seen, 16).item() == pytest.approx(0.0, abs=1e-6)  # cosine: scale-free
    other = torch.rand(1, 1, 64, 64)
    assert similarity_loss(scores, other, seen, 16) > 0.1
    assert similarity_loss(scores, other, torch.zeros_like(seen), 16) == 0  # nothing seen: no signal
    half = seen.clone()
    half[..., 32:] = False
    mixed = torch.cat((scores[..., :32], other[..., 32:]), -1)  # equal where seen, different elsewhere
    assert similarity_loss(scores, mixed, half, 16).item() == pytest.approx(0.0, abs=1e-6)


def test_peaky_loss_is_one_for_a_flat_map_and_low_for_one_peak_per_window():
    flat = torch.full((1, 1, 64, 64), 0.5)
    assert peaky_loss(flat, 16).item() == pytest.approx(1.0)
    peaks = torch.zeros(1, 1, 64, 64)
    peaks[..., 8::16, 8::16] = 1.0
    assert peaky_loss(peaks, 16) < 0.1


def test_triplet_loss_is_zero_for_distinct_matching_descriptors_and_high_when_shuffled():
    torch.manual_seed(0)
    dense = F.normalize(F.avg_pool2d(torch.randn(1, 32, 68, 68), 5, 1)[0], dim=0)  # smooth over ~5 px
    cfg = MdnetConfig(anchors=256)
    shift = torch.tensor([[1.0, 0, 2], [0, 1, 0], [0, 0, 1]])
    moved = torch.roll(dense, 2, dims=2)  # view 1 = view 0 moved 2 px right, as the homography says
    assert triplet_loss(dense, moved, shift, cfg) < 0.05
    shuffled = dense[:, torch.randperm(64)][:, :, torch.randperm(64)]
    assert triplet_loss(dense, shuffled, shift, cfg) > cfg.margin


def test_a_random_negative_pool_takes_an_easier_negative_and_rejects_a_negative_size():
    torch.manual_seed(0)
    dense = F.normalize(torch.randn(16, 40, 40), dim=0)  # no spatial smoothness: the positives are far from 1
    moved = F.normalize(dense + 0.8 * torch.randn_like(dense), dim=0)
    cfg = MdnetConfig(anchors=256)
    hardest = triplet_loss(dense, moved, torch.eye(3), cfg)
    pooled = triplet_loss(dense, moved, torch.eye(3), dataclasses.replace(cfg, negative_pool=4))
    assert pooled < hardest - 0.1  # the hardest of ~4 is less similar than the hardest of ~500
    # a collapsed map costs the margin whatever the pool: only a descriptor better than that lowers the loss
    flat = F.normalize(torch.ones(16, 40, 40), dim=0)
    assert triplet_loss(flat, flat, torch.eye(3), dataclasses.replace(cfg, negative_pool=4)).item() == pytest.approx(
        cfg.margin, abs=0.02
    )
    with pytest.raises(ValueError, match="negative_pool"):
        MdnetConfig(negative_pool=-1)


def test_the_shared_descriptor_direction_is_projected_out_of_the_head_and_the_score_is_untouched():
    torch.manual_seed(0)
    net = ALNet(model_config("alike-t")).train()
    head = net.convhead2.weight
    with torch.no_grad():  # collapse: every raw descriptor gets a large component along one direction
        shared = F.normalize(torch.randn(64), dim=0)
        head[:64, :, 0, 0] += 20 * torch.outer(shared, torch.ones(head.shape[1]))
    score_row = head[64].clone()
    images = torch.rand(2, 3, 64, 64)
    before, after = project_out_shared_direction(net, images)
    assert before > 0.95 and after < 0.2
    torch.testing.assert_close(head[64], score_row)  # the score logit's row is left alone
    assert net.training  # and the mode is restored
    with torch.no_grad():
        _, raw = net.eval()(images)
    assert mean_cosine(raw.permute(0, 2, 3, 1).reshape(-1, 64)) == pytest.approx(after, abs=1e-4)


def test_peak_anchors_are_the_score_maps_strongest_points():
    torch.manual_seed(0)
    dense = F.normalize(F.avg_pool2d(torch.randn(1, 32, 68, 68), 5, 1)[0], dim=0)
    scores = torch.zeros(64, 64)
    scores[8::12, 8::12] = 1.0  # 25 isolated peaks
    cfg = MdnetConfig(anchors=25, anchor_sampling="peaks")
    shift = torch.tensor([[1.0, 0, 2], [0, 1, 0], [0, 0, 1]])
    moved = torch.roll(dense, 2, dims=2)
    assert triplet_loss(dense, moved, shift, cfg, (scores, torch.roll(scores, 2, dims=1))) < 0.05
    shuffled = dense[:, torch.randperm(64)][:, :, torch.randperm(64)]
    assert triplet_loss(dense, shuffled, shift, cfg, (scores, scores)) > cfg.margin
    with pytest.raises(ValueError, match="anchor_sampling"):
        MdnetConfig(anchor_sampling="grid")


def test_mdnet_is_alike_t_network_behind_the_registry(tmp_path: Path):
    assert "mdnet" in extractors.names()
    assert model_config("mdnet") == model_config("alike-t")
    with pytest.raises(WeightsError, match="does not exist"):
        extractors.build("mdnet", extractors.Options(weights=str(tmp_path / "none.pth")))


def test_training_smoke_export_and_run(tmp_path: Path):
    photos = write_textured_photos(tmp_path / "photos")
    out = tmp_path / "run"
    config = tmp_path / "train.yaml"
    config.write_text(
        f"model: mdnet\nout_dir: {out}\nsteps: 2\nbatch_size: 1\naccumulate: 2\nval_top_k: 16\nthreads: 1\n"
        f"log_every: 1\nval_every: 2\nwarmup_steps: 1\n"
        f"data:\n  folder: {photos}\n  size: 64\n  cache_side: 128\n  val_images: 1\n  val_pairs: 1\n"
        "mdnet:\n  anchors: 64\n  centre_init: true\n"
    )
    assert train_main(["--config", str(config)]) == 0
    losses = next(csv.DictReader((out / "train.csv").open()))
    assert {"sim", "pk", "tr"} <= set(losses) and np.isfinite(float(losses["total"]))
    # MD-Net's losses as the validation loss, beside ALIKE's inference-path metrics
    validation = next(csv.DictReader((out / "val.csv").open()))
    assert 0 < float(validation["val_loss"]) < 3 and "repeatability" in validation
    assert 0 <= float(validation["descriptor_mean_cos"]) <= 1  # the collapse diagnostic
    exported = tmp_path / "mdnet.pth"
    assert train_main(["--export", str(out / "last.pt"), "--out", str(exported)]) == 0
    built = extractors.build("mdnet", extractors.Options(weights=str(exported), device="cpu"))
    assert built.model_name == "mdnet" and built.descriptor_dim == 64
    features = built(make_textured_image())
    assert features.descriptors.shape[1] == 64 and len(features) > 0
