"""UnsuperPoint: cell keypoints, each loss on cases with known answers (and what keeps the scores from
collapsing), the extractor behind the common contract, and its training task."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_textured_image, write_textured_photos

from alike_ros import extractors
from alike_ros.detection.dkd import DetectorConfig
from alike_ros.extractors.unsuperpoint import UnsuperPointExtractor
from alike_ros.model.unsuperpoint import CELL, MODEL_NAME, UnsuperPoint, UnsuperPointConfig, load_unsuperpoint
from alike_ros.model.weights import WeightsError
from alike_ros.training.cli import load_config
from alike_ros.training.cli import main as train_main
from alike_ros.training.metrics import effective_dimensions
from alike_ros.training.unsuperpoint_losses import (
    UnsuperPointLossConfig,
    decorrelation_loss,
    descriptor_loss,
    pair_losses,
    uniform_loss,
)

SMALL = UnsuperPointConfig(channels=(4, 8, 8, 16), head=16, dim=16)
ROOT = Path(__file__).resolve().parents[1]


def small_net() -> UnsuperPoint:
    torch.manual_seed(0)
    return UnsuperPoint(SMALL).eval()


def test_every_cell_has_one_keypoint_inside_it_with_a_unit_descriptor():
    with torch.no_grad():
        cells = small_net()(torch.rand(2, 3, 48, 64))
    assert cells.scores.shape == (2, 48) and cells.points.shape == (2, 48, 2)
    assert cells.descriptors.shape == (2, 48, 16)
    assert torch.allclose(cells.descriptors.norm(dim=-1), torch.ones(2, 48), atol=1e-5)
    column, row = torch.arange(48) % 8, torch.arange(48) // 8  # row-major cells of a 6 x 8 grid
    x, y = cells.points[0, :, 0], cells.points[0, :, 1]
    assert torch.all((x >= column * CELL - 0.5) & (x <= column * CELL + CELL - 0.5))
    assert torch.all((y >= row * CELL - 0.5) & (y <= row * CELL + CELL - 0.5))
    points, scores, _ = cells.best(0, 5)
    assert torch.all(scores[:-1] >= scores[1:]) and scores[0] == cells.scores[0].max()


def test_uniform_loss_is_zero_for_evenly_spread_offsets_and_high_when_they_crowd():
    even = torch.linspace(0, 1, 50)[torch.randperm(50)]  # order does not matter: the loss sorts
    assert uniform_loss(torch.stack((even, even.flip(0)), 1)).item() == pytest.approx(0.0, abs=1e-10)
    crowded = torch.full((50, 2), 0.5)
    at_borders = torch.tensor([0.0, 1.0]).repeat(25)[:, None].expand(50, 2)
    assert uniform_loss(crowded) > 5 * uniform_loss(torch.rand(50, 2)) and uniform_loss(at_borders) > 1


def test_decorrelation_loss_is_low_for_independent_dimensions_and_high_for_copies():
    torch.manual_seed(0)
    independent = torch.randn(4000, 8)
    copies = independent[:, :1].repeat(1, 8) + 0.01 * torch.randn(4000, 8)
    assert decorrelation_loss(independent) < 0.05
    assert decorrelation_loss(copies) == pytest.approx(56.0, rel=0.01)  # 8 x 7 off-diagonal entries near 1


def test_effective_dimensions_see_the_variance_spread_that_the_decorrelation_loss_does_not():
    torch.manual_seed(0)
    equal = torch.randn(4000, 8)
    three_strong = equal * torch.tensor([1.0, 1.0, 1.0] + [0.01] * 5)  # still independent dimensions
    assert effective_dimensions(equal) == pytest.approx(8.0, rel=0.05)
    assert effective_dimensions(three_strong) == pytest.approx(3.0, rel=0.05)
    assert effective_dimensions(equal[:, :1] * torch.ones(1, 8)) == pytest.approx(1.0, rel=1e-3)
    # correlation ignores each dimension's scale: both sets look equally decorrelated to the loss
    assert decorrelation_loss(three_strong) == pytest.approx(decorrelation_loss(equal).item(), rel=1e-3)


def test_descriptor_hinge_is_zero_for_perfect_descriptors_and_grows_when_they_are_swapped():
    cfg = UnsuperPointLossConfig()
    eye = torch.eye(6)
    positive = torch.eye(6, dtype=torch.bool)
    assert descriptor_loss(eye, eye, positive, cfg) == 0  # positives at 1, negatives at 0 < 0.2
    swapped = eye[[1, 0, 2, 3, 4, 5]]
    # two positives at 0 (each 250 x 1) and two negatives at 1 (each 0.8)
    assert descriptor_loss(eye, swapped, positive, cfg).item() == pytest.approx(2 * 250 + 2 * 0.8)


def view(points: torch.Tensor, scores: torch.Tensor, descriptors: torch.Tensor | None = None):
    descriptors = torch.eye(len(points)) if descriptors is None else descriptors
    return scores, points, descriptors, torch.rand(len(points), 2)


def test_point_pairs_are_found_through_the_homography():
    points = torch.tensor([[10.0, 10.0], [30.0, 12.0], [50.0, 40.0]])
    shift = torch.tensor([[1.0, 0, 3], [0, 1, 0], [0, 0, 1]])  # B = A moved 3 px right
    scores = torch.full((3,), 0.5)
    exact = pair_losses(view(points, scores), view(points + torch.tensor([3.0, 0]), scores), shift, 64, CFG)
    assert exact["position"] == 0 and exact["score"] == 0 and exact["descriptor"] == 0
    off = pair_losses(view(points, scores), view(points + torch.tensor([4.0, 1]), scores), shift, 64, CFG)
    assert off["position"].item() == pytest.approx(3 * 2**0.5 / 3)  # three pairs 1.41 px off, over 3 cells
    far = pair_losses(view(points, scores), view(points + torch.tensor([10.0, 0]), scores), shift, 64, CFG)
    assert far["position"] == 0  # 7 px: beyond the 4 px of a point pair, no pair at all


def test_the_triplet_replaces_the_hinge_and_unknown_descriptor_losses_are_refused():
    points = torch.tensor([[10.0, 10.0], [30.0, 12.0], [50.0, 40.0]])
    scores = torch.full((3,), 0.5)
    cfg = UnsuperPointLossConfig(descriptor_loss="triplet")
    a = view(points, scores)
    matched = pair_losses(a, view(points, scores), torch.eye(3), 64, cfg)
    swapped = pair_losses(a, view(points, scores, torch.eye(3)[[1, 0, 2]]), torch.eye(3), 64, cfg)
    assert matched["descriptor"] == 0  # positives at distance 0, negatives at sqrt(2) > the margin 1
    # two anchors whose positive is at sqrt(2) and a negative at 0: 1 + sqrt(2) each, averaged over the 3 anchors
    assert swapped["descriptor"].item() == pytest.approx(2 * (1 + 2**0.5) / 3)
    with pytest.raises(ValueError, match="hinge or triplet"):
        UnsuperPointLossConfig(descriptor_loss="contrastive")
    with pytest.raises(ValueError, match="negative_pool"):
        UnsuperPointLossConfig(descriptor_loss="triplet", negative_pool=-1)


def test_the_bundled_weights_config_trains_the_triplet_and_the_hinge_stays_an_option():
    triplet = load_config(str(ROOT / "alike_ros/training/configs/unsuperpoint.yaml"))  # the bundled weights
    hinge = load_config(str(ROOT / "research/training/unsuperpoint-hinge.yaml"))
    assert triplet.model == hinge.model == MODEL_NAME
    assert (triplet.unsuperpoint_loss.descriptor_loss, triplet.unsuperpoint_loss.negative_pool) == ("triplet", 16)
    assert hinge.unsuperpoint_loss.descriptor_loss == "hinge"
    # the rest is the hinge run's: the same network, data and detection losses
    assert triplet.unsuperpoint == hinge.unsuperpoint and triplet.data == hinge.data
    assert triplet.unsuperpoint_loss.w_score == hinge.unsuperpoint_loss.w_score


CFG = UnsuperPointLossConfig()


def descend_scores(centred: bool, steps: int = 200) -> torch.Tensor:
    """Scores (as logits) of 40 point pairs at distances 0.1..3.9 px, trained with the point-pair losses alone."""
    points = torch.stack((torch.arange(40.0) * 12 + 4, torch.full((40,), 20.0)), 1)  # each B point nearest its own
    moved = points + torch.stack((torch.arange(1.0, 41.0) * 0.0975, torch.zeros(40)), 1)
    logits = torch.zeros(40, requires_grad=True)
    cfg = UnsuperPointLossConfig(centred=centred, w_uniform=0, w_descriptor=0, w_decorrelation=0)
    opt = torch.optim.SGD([logits], lr=20.0)
    for _ in range(steps):
        scores = torch.sigmoid(logits)
        opt.zero_grad()
        pair_losses(view(points, scores), view(moved, scores.detach()), torch.eye(3), 512, cfg)["total"].backward()
        opt.step()
    return torch.sigmoid(logits.detach())


def test_the_centred_matching_loss_ranks_scores_by_distance_instead_of_letting_them_fall_to_zero():
    """The notes' question: the matching loss s·(d - d̄) is 0 for any constant score and lower for scores that
    rank the points by distance, so an all-zero map is no minimum; without centring (s·d) it is."""
    centred = descend_scores(True)
    assert centred[:10].mean() > 0.9 and centred[-10:].mean() < 0.1  # close pairs score high, far ones low
    assert np.all(np.diff(centred.numpy()) <= 1e-6)
    assert centred.mean() == pytest.approx(0.5, abs=0.05)  # the level stays where it began
    uncentred = descend_scores(False)
    assert uncentred.max() < 0.5 and uncentred.mean() < 0.05  # every score falls, towards an all-zero map


def save(path: Path, cfg: UnsuperPointConfig = SMALL) -> Path:
    net = small_net()
    config = {**cfg.__dict__, "channels": list(cfg.channels)}
    torch.save({"state_dict": net.state_dict(), "model": MODEL_NAME, "step": 0, "note": "", "config": config}, path)
    return path


def test_the_extractor_keeps_the_contract_and_the_detector_settings(tmp_path: Path):
    net = load_unsuperpoint(save(tmp_path / "up.pth"))
    image = make_textured_image()[:237, :317]  # not a multiple of 8: the padding's cells must not count
    every = UnsuperPointExtractor(net, extractors.Options(device="cpu", detector=DetectorConfig(score_threshold=0.0)))
    features = every(image)
    assert 0 < len(features) <= (240 // 8) * (320 // 8)
    assert features.descriptors.shape == (len(features), 16)
    assert np.all(np.diff(features.scores) <= 0) and features.scores.min() > 0 and features.scores.max() <= 1
    assert np.allclose(np.linalg.norm(features.descriptors, axis=1), 1, atol=1e-5)
    border = DetectorConfig().border
    assert np.all((features.keypoints >= border) & (features.keypoints <= [316 - border, 236 - border]))
    assert np.array_equal(every(image).descriptors, features.descriptors)  # deterministic
    # the network's own points and descriptors (described inside it in training), though the extractor runs a
    # BatchNorm-folded copy
    rgb = np.pad(np.repeat(image[..., None], 3, 2), ((0, 3), (0, 3), (0, 0)))  # padded to multiples of 8
    with torch.no_grad():
        cells = net(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255)
    exact = "donot_use_mm_for_euclid_dist"
    distance, cell = torch.cdist(torch.from_numpy(features.keypoints), cells.points[0], compute_mode=exact).min(1)
    assert distance.max() < 1e-3
    assert np.allclose(features.descriptors, cells.descriptors[0, cell].numpy(), atol=1e-5)
    assert np.allclose(features.scores, cells.scores[0, cell].numpy(), atol=1e-6)

    middle = float(np.median(features.scores))
    strict = DetectorConfig(score_threshold=middle, top_k=-1)
    above = UnsuperPointExtractor(net, extractors.Options(device="cpu", detector=strict))(image)
    assert 0 < len(above) < len(features) and above.scores.min() > middle
    capped = UnsuperPointExtractor(net, extractors.Options(device="cpu", detector=DetectorConfig(top_k=7)))(image)
    assert len(capped) == 7
    with pytest.raises(ValueError, match="empty"):
        every(np.zeros((4, 0), np.uint8))


def test_weights_are_checked_and_the_registry_knows_the_model(tmp_path: Path):
    assert MODEL_NAME in extractors.names()
    assert extractors.registration(MODEL_NAME).descriptor_dim == UnsuperPointConfig().dim
    other = tmp_path / "other.pth"
    torch.save({"state_dict": {}, "model": "keynet", "step": 0, "config": {}}, other)
    with pytest.raises(WeightsError, match="not a unsuperpoint weights file"):
        load_unsuperpoint(other)
    wrong = save(tmp_path / "wrong.pth")
    saved = torch.load(wrong, weights_only=True)
    saved["config"]["dim"] = 32
    torch.save(saved, wrong)
    with pytest.raises(WeightsError, match="does not fit"):
        load_unsuperpoint(wrong)
    with pytest.raises(ValueError, match="float32 only"):
        extractors.build(MODEL_NAME, extractors.Options(weights=str(save(tmp_path / "ok.pth")), half=True))


def test_training_smoke_export_and_validate(tmp_path: Path):
    photos = write_textured_photos(tmp_path / "photos")
    out = tmp_path / "run"
    config = tmp_path / "train.yaml"
    config.write_text(
        f"model: {MODEL_NAME}\nout_dir: {out}\nsteps: 2\nbatch_size: 2\naccumulate: 1\nval_top_k: 20\nthreads: 1\n"
        f"log_every: 1\nval_every: 2\nwarmup_steps: 1\n"
        f"data:\n  folder: {photos}\n  size: 64\n  cache_side: 128\n  val_images: 1\n  val_pairs: 1\n"
        "unsuperpoint:\n  channels: [4, 8, 8, 16]\n  head: 16\n  dim: 16\n"
    )
    assert train_main(["--config", str(config)]) == 0
    losses = next(csv.DictReader((out / "train.csv").open()))
    assert {"position", "score", "matching", "uniform", "descriptor", "decorrelation"} <= set(losses)
    assert all(np.isfinite(float(losses[k])) for k in ("total", "uniform", "descriptor"))
    validation = next(csv.DictReader((out / "val.csv").open()))
    assert 0 < float(validation["score_mean"]) < 1 and float(validation["score_std"]) > 0
    assert 1 <= float(validation["descriptor_dims"]) <= 16  # the dimensional-collapse diagnostic
    exported = tmp_path / "exported.pth"
    assert train_main(["--export", str(out / "last.pt"), "--out", str(exported)]) == 0
    assert load_unsuperpoint(exported).cfg == SMALL
    built = extractors.build(MODEL_NAME, extractors.Options(weights=str(exported), device="cpu"))
    assert built.descriptor_dim == 16 and len(built(make_textured_image())) > 0
    assert train_main(["--config", str(config), "--validate", str(exported)]) == 0
