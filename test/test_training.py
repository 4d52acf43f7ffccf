"""Training machinery: pair generation, each loss on cases with known answers, and a tiny train/resume/export."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from alike_ros.geometry import tilt_homography, warp_points
from alike_ros.model.weights import load_model
from alike_ros.training.cli import main as train_main
from alike_ros.training.data import (
    DataConfig,
    PairDataset,
    PhotometricConfig,
    WarpConfig,
    random_homography,
    valid_mask,
)
from alike_ros.training.detection import soft_detect
from alike_ros.training.losses import (
    LossConfig,
    calibration_loss,
    nre_loss,
    peaky_loss,
    reliability_loss,
    reprojection_loss,
    similarity_at,
    similarity_map,
    triplet_loss,
)
from alike_ros.training.trainer import TrainConfig, learning_rate


def smooth_photo(seed: int = 0, shape: tuple[int, int] = (120, 160)) -> np.ndarray:
    """A smooth random RGB image, so bilinear resampling twice barely changes it."""
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.random((shape[0] // 8, shape[1] // 8, 3)).astype(np.float32), shape[::-1])
    return (cv2.GaussianBlur(img, (0, 0), 2.0) * 255).astype(np.uint8)


def exact_config(size: int = 64) -> DataConfig:
    return DataConfig(size=size, photometric=PhotometricConfig(enabled=False))


def translation(dx: float, dy: float) -> torch.Tensor:
    return torch.tensor([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


# ---- pairs


def test_pair_pixels_follow_the_homography():
    pair = PairDataset([smooth_photo()], exact_config(), seed=3)[5]
    img0 = pair["image0"].permute(1, 2, 0).numpy()
    img1 = pair["image1"].permute(1, 2, 0).numpy()
    h = pair["H"].double().numpy()
    size = img0.shape[0]
    # pull image1 back onto image0's grid through H: where the mask says so, it must reproduce image0
    ys, xs = np.mgrid[0:size, 0:size]
    to1 = warp_points(h, np.stack((xs.ravel(), ys.ravel()), 1)).astype(np.float32).reshape(size, size, 2)
    pulled = cv2.remap(img1, to1[..., 0], to1[..., 1], cv2.INTER_LINEAR)
    mask = cv2.erode(pair["mask0"].numpy().astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert mask.sum() > 0.2 * size * size
    assert np.median(np.abs(pulled - img0)[mask]) < 0.01


def test_valid_mask_of_a_translation():
    mask = valid_mask(np.array([[1, 0, 10], [0, 1, -4], [0, 0, 1]], np.float64), 32)
    expected = np.zeros((32, 32), bool)
    expected[4:, :22] = True  # x + 10 <= 31 and y - 4 >= 0
    assert np.array_equal(mask, expected)


def test_pair_masks_agree_with_the_warp():
    pair = PairDataset([smooth_photo()], exact_config(), seed=1)[0]
    h = pair["H"].double().numpy()
    for mask, hom in ((pair["mask0"], h), (pair["mask1"], np.linalg.inv(h))):
        assert np.array_equal(mask.numpy(), valid_mask(hom, 64))


def test_pairs_are_deterministic_with_the_seed():
    photos = [smooth_photo(0), smooth_photo(1)]
    cfg = DataConfig(size=64)
    a, b = PairDataset(photos, cfg, seed=7)[11], PairDataset(photos, cfg, seed=7)[11]
    for key in a:
        assert torch.equal(a[key], b[key])
    assert not torch.equal(a["image1"], PairDataset(photos, cfg, seed=8)[11]["image1"])
    assert not torch.equal(a["H"], PairDataset(photos, cfg, seed=7)[12]["H"])


def test_random_homography_keeps_the_views_overlapping():
    rng = np.random.default_rng(0)
    cfg = DataConfig().warp
    for _ in range(50):
        h = random_homography(rng, 64, cfg)
        assert abs(np.linalg.det(h)) > 1e-6
        assert valid_mask(h, 64).mean() > 0.3  # enough shared content for every loss


def local_anisotropy(h: np.ndarray, point: tuple[float, float], eps: float = 1e-3) -> float:
    """Ratio of the singular values of the homography's Jacobian at `point` (finite differences)."""
    p = np.array([point, (point[0] + eps, point[1]), (point[0], point[1] + eps)])
    q = warp_points(h, p)
    jac = np.stack((q[1] - q[0], q[2] - q[0]), 1) / eps
    sv = np.linalg.svd(jac, compute_uv=False)
    return float(sv[0] / sv[1])


@pytest.mark.parametrize("tilt", [0.0, 30.0, 60.0])
def test_tilt_foreshortens_the_centre_by_the_cosine_of_the_tilt(tilt: float):
    h = tilt_homography((120, 160), tilt, axis_deg=35.0)
    centre = (79.5, 59.5)
    assert warp_points(h, np.array([centre]))[0] == pytest.approx(centre, abs=1e-9)  # the axis goes through it
    assert local_anisotropy(h, centre) == pytest.approx(1 / math.cos(math.radians(tilt)), rel=1e-4)


def test_training_tilts_reach_graf_like_viewpoints_only_when_enabled():
    """graf1->3 foreshortens by up to 1.8x; without tilts the training warps stay well below that."""

    def strongest(cfg: WarpConfig) -> float:
        rng = np.random.default_rng(0)
        return max(local_anisotropy(random_homography(rng, 64, cfg), (31.5, 31.5)) for _ in range(200))

    assert strongest(WarpConfig()) < 1.8 < strongest(WarpConfig(max_tilt_deg=60.0))
    # off, the warps draw exactly what they drew before tilts existed (so old runs keep their validation pairs)
    assert np.array_equal(
        random_homography(np.random.default_rng(1), 64, WarpConfig()),
        random_homography(np.random.default_rng(1), 64, WarpConfig(max_tilt_deg=0.0)),
    )


# ---- detection and losses


def test_soft_detect_finds_a_subpixel_peak_and_is_differentiable():
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    # a broad bump centred at (15.3, 10): the soft-argmax moves the integer peak (15, 10) towards the centre
    scores = (1 - 0.05 * ((xs - 15.3) ** 2 + (ys - 10.0) ** 2)).clamp(min=0).requires_grad_()
    desc = F.normalize(torch.randn(8, 32, 32), dim=0)
    out = soft_detect(scores, desc, top_k=1, window_size=5, temperature=0.1)
    x, y = out.keypoints[0].tolist()
    assert 15.1 < x < 15.4 and y == pytest.approx(10.0, abs=1e-4)
    assert out.descriptors.norm(dim=1).item() == pytest.approx(1.0, abs=1e-5)
    out.keypoints.sum().backward()
    assert scores.grad is not None and scores.grad.abs().sum() > 0


def test_peaky_loss_is_low_for_a_sharp_peak_and_high_for_a_flat_window():
    desc = F.normalize(torch.randn(4, 16, 16), dim=0)
    sharp = torch.zeros(16, 16)
    sharp[8, 8] = 1.0
    flat = torch.zeros(16, 16)
    flat[6:11, 6:11] = 0.9
    flat[8, 8] = 0.91
    d_sharp = soft_detect(sharp, desc, 1, 5, 0.1)
    d_flat = soft_detect(flat, desc, 1, 5, 0.1)
    sharp_loss = peaky_loss(d_sharp.dispersity, d_sharp.scores, 0.1)
    flat_loss = peaky_loss(d_flat.dispersity, d_flat.scores, 0.1)
    assert sharp_loss < 0.01
    # a uniform 5x5 window: mean squared distance of its cells from the centre is 2 * 2 = 4 px^2, / r^2 = 1
    assert flat_loss > 0.9
    assert peaky_loss(d_flat.dispersity, torch.zeros(1), 0.1) == 0  # below the score threshold: ignored


def test_reprojection_loss_is_zero_for_exact_points_and_grows_with_a_shift():
    kp0 = torch.tensor([[10.0, 10.0], [30.0, 12.0], [20.0, 40.0]])
    h = translation(5.0, -3.0)
    kp1 = warp_points(h, kp0)
    loss, n = reprojection_loss(kp0, kp1, h, 64, 64, threshold=5.0)
    assert n == 3 and loss.item() == pytest.approx(0.0, abs=1e-5)
    for norm, expected in ((1, 1.0 + 0.5), (2, math.hypot(1.0, 0.5))):
        loss, n = reprojection_loss(kp0, kp1 + torch.tensor([1.0, 0.5]), h, 64, 64, 5.0, norm=norm)
        assert n == 3 and loss.item() == pytest.approx(expected, abs=1e-4)
    _, n = reprojection_loss(kp0, kp1 + 10.0, h, 64, 64, threshold=5.0)
    assert n == 0  # too far apart to be a correspondence


def test_reprojection_loss_ignores_points_warped_out_of_view():
    kp0 = torch.tensor([[10.0, 10.0], [60.0, 10.0]])
    h = translation(10.0, 0.0)  # the second point lands at x = 70, outside a 64-px image
    loss, n = reprojection_loss(kp0, warp_points(h, kp0), h, 64, 64, threshold=5.0)
    assert n == 1 and loss.item() == pytest.approx(0.0, abs=1e-5)


def descriptor_case(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A unit descriptor map, integer keypoints and their descriptors (identity warp)."""
    g = torch.Generator().manual_seed(seed)
    dmap = F.normalize(torch.randn(16, 24, 24, generator=g), dim=0)
    kp = torch.tensor([[3.0, 4.0], [10.0, 10.0], [20.0, 7.0], [15.0, 18.0]])
    desc = dmap[:, kp[:, 1].long(), kp[:, 0].long()].T
    return dmap, kp, desc


def test_nre_is_lower_for_matching_descriptors_than_for_shuffled_ones():
    dmap, kp, desc = descriptor_case()
    visible = torch.ones(len(kp), dtype=torch.bool)
    for outside_bin, floor in ((False, 0.0), (True, math.log(2))):
        losses = {}
        for name, d in (("matching", desc), ("shuffled", desc[[1, 2, 3, 0]])):
            sim_gt, w = similarity_at(d, dmap, kp)
            losses[name] = nre_loss(similarity_map(d, dmap), sim_gt, w, visible, 0.02, outside_bin).item()
        # a perfect match still shares its probability with the outside bin (similarity 1 too): floor log 2
        assert losses["matching"] == pytest.approx(floor, abs=0.05)
        assert losses["shuffled"] > floor + 1.0


def test_nre_samples_the_probability_bilinearly_between_pixels():
    dmap, kp, desc = descriptor_case()
    visible = torch.ones(len(kp), dtype=torch.bool)
    between = kp + torch.tensor([0.5, 0.0])  # half-way to the next pixel, which does not match: p ~ 1/2
    sim_gt, w = similarity_at(desc, dmap, between)
    loss = nre_loss(similarity_map(desc, dmap), sim_gt, w, visible, 0.02, outside_bin=False)
    assert loss.item() == pytest.approx(math.log(2), abs=0.05)


def test_nre_outside_bin_wants_out_of_view_points_to_match_nothing():
    dmap, kp, desc = descriptor_case()
    hidden = torch.zeros(len(kp), dtype=torch.bool)
    sim_gt, w = similarity_at(desc, dmap, kp)
    # these descriptors do exist in the map (similarity 1), so the outside bin gets at most about half
    loss = nre_loss(similarity_map(desc, dmap), sim_gt, w, hidden, 0.02, outside_bin=True)
    assert loss.item() == pytest.approx(math.log(2), abs=0.05)


def test_reliability_is_zero_for_perfect_descriptors_and_higher_for_shuffled_ones():
    dmap, kp, desc = descriptor_case()
    scores = torch.full((len(kp),), 0.8)
    perfect = reliability_loss(*similarity_at(desc, dmap, kp), scores, scores, temperature=0.1)
    shuffled = reliability_loss(*similarity_at(desc[[1, 2, 3, 0]], dmap, kp), scores, scores, temperature=0.1)
    assert perfect.item() == pytest.approx(0.0, abs=1e-5)
    assert shuffled > 0.5


def test_matching_probability_reliability_also_punishes_look_alikes():
    """A keypoint whose descriptor appears again elsewhere in the other map survives the warp as well as a
    distinctive one (same similarity reliability), but only half of its matching probability is at its ground
    truth."""
    dmap, kp, desc = descriptor_case()
    scores = torch.full((len(kp),), 0.8)
    twin = dmap.clone()
    twin[:, 20, 2] = desc[0]  # keypoint 0's descriptor again, far from its ground truth
    losses = {}
    for name, m in (("distinctive", dmap), ("look-alike", twin)):
        sim_gt, w = similarity_at(desc[:1], m, kp[:1])
        losses[name, "similarity"] = reliability_loss(sim_gt, w, scores[:1], scores[:1], 0.02).item()
        sim = similarity_map(desc[:1], m)
        losses[name, "probability"] = reliability_loss(sim_gt, w, scores[:1], scores[:1], 0.02, sim).item()
    assert losses["distinctive", "similarity"] == pytest.approx(losses["look-alike", "similarity"], abs=1e-6)
    assert losses["distinctive", "probability"] < 0.05
    assert losses["look-alike", "probability"] == pytest.approx(0.5, abs=0.05)
    with pytest.raises(ValueError, match="reliability"):
        LossConfig(reliability="psychic")


def test_calibration_rewards_high_scores_exactly_where_matches_are_correct():
    _, kp, desc = descriptor_case()
    right = desc.clone()
    wrong = desc[[1, 0, 2, 3]]  # the first two keypoints' descriptors swapped: those two match wrongly
    high, low = torch.full((4,), 0.99), torch.full((4,), 0.01)
    assert calibration_loss(desc, right, kp, kp, high, radius=2.0) < 0.02
    assert calibration_loss(desc, right, kp, kp, low, radius=2.0) > 4.0
    best = torch.tensor([0.01, 0.01, 0.99, 0.99])
    assert calibration_loss(desc, wrong, kp, kp, best, radius=2.0) < 0.02
    assert calibration_loss(desc, wrong, kp, kp, high, radius=2.0) > 2.0
    assert calibration_loss(desc, right, kp, kp + 5.0, high, radius=2.0) > 4.0  # too far from the ground truth
    scores = torch.full((4,), 0.5, requires_grad=True)
    calibration_loss(desc, wrong, kp, kp, scores, radius=2.0).backward()
    assert (scores.grad[:2] > 0).all() and (scores.grad[2:] < 0).all()  # wrong ones pushed down, right ones up


def test_triplet_loss_is_lower_for_matching_descriptors():
    _, kp, desc = descriptor_case()
    matching = triplet_loss(desc, desc, kp, kp, margin=1.0, radius=2.0)
    shuffled = triplet_loss(desc[[1, 2, 3, 0]], desc, kp, kp, margin=1.0, radius=2.0)
    assert matching < shuffled


def test_a_random_negative_pool_gives_the_triplet_an_easier_negative():
    torch.manual_seed(0)
    kp = torch.rand(300, 2) * 200
    desc = F.normalize(torch.randn(300, 8), dim=1)
    noisy = F.normalize(desc + 0.5 * torch.randn_like(desc), dim=1)
    hardest = triplet_loss(desc, noisy, kp, kp, margin=1.0, radius=2.0)
    pooled = triplet_loss(desc, noisy, kp, kp, margin=1.0, radius=2.0, pool=4)
    assert pooled < hardest - 0.1  # the nearest of ~4 random descriptors is farther than the nearest of 300


# ---- training loop


def write_photos(folder: Path, n: int = 4) -> None:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        img = cv2.GaussianBlur((rng.random((48, 64, 3)) * 255).astype(np.uint8), (0, 0), 1.0)
        cv2.imwrite(str(folder / f"{i:02d}.png"), img)


# ---- schedule


@pytest.mark.parametrize("start", [0, 5850])
def test_schedule_warms_up_to_the_peak_then_decays_to_the_floor_over_the_run_itself(start: int):
    """A run started with --init at step `start` gets the whole schedule over start..steps, not its tail."""
    cfg = TrainConfig(lr=3e-4, warmup_steps=50, steps=start + 1200, final_lr_ratio=0.1)
    rates = [learning_rate(cfg, step, start) for step in range(start, cfg.steps + 1)]
    assert rates[0] == pytest.approx(3e-4 / 50)
    assert max(rates) == pytest.approx(3e-4)
    assert rates[50] == pytest.approx(3e-4)  # no drop where the warm-up ends
    assert rates[-1] == pytest.approx(3e-5)
    assert (np.diff(rates[50:]) <= 0).all()


def test_training_smoke_resume_and_export(tmp_path: Path):
    write_photos(tmp_path / "photos")
    config = tmp_path / "train.yaml"
    out = tmp_path / "run"
    config.write_text(
        f"out_dir: {out}\nsteps: 3\nbatch_size: 1\naccumulate: 2\ntop_k: 16\nval_top_k: 16\nthreads: 1\nlog_every: 1\n"
        f"val_every: 2\nwarmup_steps: 2\ndata:\n  folder: {tmp_path / 'photos'}\n  size: 32\n  val_images: 1\n"
        "  val_pairs: 1\n"
    )
    assert train_main(["--config", str(config)]) == 0
    ckpt = torch.load(out / "last.pt", weights_only=True)  # tensors and plain data only
    assert ckpt["step"] == 3 and ckpt["model"] == "alike-t"
    assert {"state_dict", "optimizer", "config"} <= set(ckpt)
    rows = list(csv.DictReader((out / "train.csv").open()))
    assert len(rows) == 3 and all(np.isfinite(float(r["total"])) for r in rows)
    assert (out / "losses.png").stat().st_size > 0
    with pytest.raises(FileExistsError):  # a finished run is never overwritten silently
        train_main(["--config", str(config)])
    assert train_main(["--config", str(config), "--resume", "--steps", "4"]) == 0
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 4
    assert len((out / "train.csv").read_text().splitlines()) == 5  # the resumed run appends step 4 only
    weights = tmp_path / "alike-t.pth"
    assert train_main(["--export", str(out / "last.pt"), "--out", str(weights), "--note", "test"]) == 0
    small = torch.load(weights, weights_only=True)
    assert set(small) == {"state_dict", "model", "step", "note"} and small["step"] == 4
    net = load_model("alike-t", weights)
    with torch.no_grad():
        scores, desc = net.dense_maps(torch.rand(1, 3, 32, 32))
    assert torch.isfinite(scores).all() and torch.isfinite(desc).all()

    # a new run can start from our own export (keeping its step count), never from a plain state dict
    assert (
        train_main(
            ["--config", str(config), "--init", str(weights), "--out-dir", str(tmp_path / "run2"), "--steps", "5"]
        )
        == 0
    )
    continued = torch.load(tmp_path / "run2" / "last.pt", weights_only=True)
    assert continued["step"] == 5 and continued["start"] == 4
    plain = tmp_path / "plain.pth"
    torch.save(small["state_dict"], plain)
    with pytest.raises(ValueError, match="not a weights file exported"):
        train_main(["--config", str(config), "--init", str(plain), "--out-dir", str(tmp_path / "run3")])


def tiny_config(tmp_path: Path, out: Path) -> Path:
    if not (tmp_path / "photos").exists():
        write_photos(tmp_path / "photos")
    config = tmp_path / f"{out.name}.yaml"
    config.write_text(
        f"out_dir: {out}\nsteps: 3\nbatch_size: 1\naccumulate: 2\ntop_k: 16\nval_top_k: 16\nthreads: 1\n"
        f"log_every: 1\nval_every: 2\nwarmup_steps: 2\ndata:\n  folder: {tmp_path / 'photos'}\n  size: 32\n"
        "  val_images: 1\n  val_pairs: 1\n"
    )
    return config


def test_resumed_run_continues_identically(tmp_path: Path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert train_main(["--config", str(tiny_config(tmp_path, straight)), "--steps", "4"]) == 0
    config = tiny_config(tmp_path, split)
    assert train_main(["--config", str(config)]) == 0  # 3 steps (the warm-up is 2: same rates as the 4-step run)
    assert train_main(["--config", str(config), "--resume", "--steps", "4"]) == 0
    a = torch.load(straight / "last.pt", weights_only=True)
    b = torch.load(split / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 4
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    assert torch.equal(a["torch_rng"], b["torch_rng"])


class Payload:
    """Unpickling it creates a file: stands for arbitrary code in a pickle."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (self.marker.touch, ())


def test_checkpoint_holding_a_python_object_is_refused_unloaded(tmp_path: Path, capsys):
    out = tmp_path / "run"
    config = tiny_config(tmp_path, out)
    assert train_main(["--config", str(config), "--steps", "1"]) == 0
    ckpt = torch.load(out / "last.pt", weights_only=True)
    marker = tmp_path / "code-ran"
    torch.save({**ckpt, "payload": Payload(marker)}, out / "last.pt")
    capsys.readouterr()
    assert train_main(["--config", str(config), "--resume", "--steps", "2"]) == 2
    assert train_main(["--export", str(out / "last.pt"), "--out", str(tmp_path / "w.pth")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(f"cannot read training checkpoint {out / 'last.pt'}" in line for line in err)
    assert all("never other Python objects" in line and "weights_only" not in line for line in err)
    assert not marker.exists() and not (tmp_path / "w.pth").exists()


def test_old_format_and_missing_checkpoints_get_clear_errors(tmp_path: Path, capsys):
    out = tmp_path / "run"
    config = tiny_config(tmp_path, out)
    assert train_main(["--config", str(config), "--resume"]) == 2
    assert f"nothing to resume: {out / 'last.pt'} does not exist" in capsys.readouterr().err
    assert train_main(["--config", str(config), "--steps", "1"]) == 0
    ckpt = torch.load(out / "last.pt", weights_only=True)
    old = {k: v for k, v in ckpt.items() if k not in ("format", "torch_rng")}  # as written before format 2
    torch.save(old, out / "last.pt")
    capsys.readouterr()
    assert train_main(["--config", str(config), "--resume", "--steps", "2"]) == 2
    assert "format 1, this version resumes format 2 only" in capsys.readouterr().err
    # its weights can still be exported and a new run started from them
    assert train_main(["--export", str(out / "last.pt"), "--out", str(tmp_path / "w.pth")]) == 0
    assert torch.load(tmp_path / "w.pth", weights_only=True)["step"] == 1
