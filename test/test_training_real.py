"""Training with real viewpoint change: ground truth from calibrated cameras (verified matches, depth maps), crop
pairs that keep it exact, the losses on it, the mix with homography pairs, and a tiny run on Strecha views."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import SHARED, require

from alike_ros.model.alnet import ALNet, model_config
from alike_ros.training.cli import main as train_main
from alike_ros.training.cli import read_settings
from alike_ros.training.data import PhotometricConfig
from alike_ros.training.detection import SoftKeypoints
from alike_ros.training.losses import LossConfig, pair_losses, reprojection_loss
from alike_ros.training.pair_geometry import DepthPair
from alike_ros.training.real_pairs import MixedPairs, RealConfig, RealPairDataset, covisible
from alike_ros.training.strecha import (
    Camera,
    CorrespondenceConfig,
    Scene,
    consistent_depths,
    depth_map,
    epipolar_distance,
    fundamental,
    relative_pose,
    verified_matches,
)
from alike_ros.training.trainer import TrainConfig, training_mode

STRECHA = SHARED / "data" / "realgeo" / "strecha"
SIZE = (160, 120)  # (width, height) of the synthetic views
K = np.array([[150.0, 0, 79.5], [0, 150.0, 59.5], [0, 0, 1]])
# a slanted plane n . X = d in the world, seen by camera a at the origin and camera b moved right and turned
PLANE_N, PLANE_D = np.array([0.3, 0.1, 1.0]) / np.linalg.norm([0.3, 0.1, 1.0]), 10.0


def rotation_y(deg: float) -> np.ndarray:
    return cv2.Rodrigues(np.array([0.0, np.deg2rad(deg), 0.0]))[0]


CAM_A = Camera(K, np.eye(3), np.zeros(3), SIZE)
CAM_B = Camera(K, rotation_y(-6.0), np.array([0.9, 0.1, 0.05]), SIZE)


def plane_depth(cam: Camera) -> np.ndarray:
    """The plane's exact depth at every pixel of the camera."""
    ys, xs = np.mgrid[0 : SIZE[1], 0 : SIZE[0]]
    rays = np.stack((xs, ys, np.ones_like(xs)), -1).astype(np.float64) @ np.linalg.inv(cam.K).T @ cam.R.T
    return ((PLANE_D - PLANE_N @ cam.C) / (rays @ PLANE_N)).astype(np.float32)


def on_plane(cam: Camera, pixels: np.ndarray) -> np.ndarray:
    depth = plane_depth(cam)[pixels[:, 1].round().astype(int), pixels[:, 0].round().astype(int)]
    rays = np.c_[pixels.round(), np.ones(len(pixels))] @ np.linalg.inv(cam.K).T
    return (rays * depth[:, None]) @ cam.R.T + cam.C


def plane_scene() -> Scene:
    """Two views of a smooth textured plane: view b rendered from view a through the plane's homography."""
    rng = np.random.default_rng(0)
    tex = cv2.resize(rng.random((SIZE[1] // 6, SIZE[0] // 6, 3)).astype(np.float32), SIZE)
    img_a = (cv2.GaussianBlur(tex, (0, 0), 2.0) * 255).astype(np.uint8)
    r, t = relative_pose(CAM_A, CAM_B)
    n_a, d_a = CAM_A.R.T @ PLANE_N, PLANE_D - PLANE_N @ CAM_A.C  # the plane in camera a's coordinates
    h_ab = K @ (r + np.outer(t, n_a) / d_a) @ np.linalg.inv(K)
    img_b = cv2.warpPerspective(img_a, h_ab, SIZE, flags=cv2.INTER_LINEAR)
    depths = [plane_depth(CAM_A), plane_depth(CAM_B)]
    pixels = rng.uniform((5, 5), (SIZE[0] - 6, SIZE[1] - 6), (300, 2)).round()
    points = [pixels.astype(np.float32)] * 2
    point_depths = [d[pixels[:, 1].astype(int), pixels[:, 0].astype(int)] for d in depths]
    return Scene("plane", [img_a, img_b], [CAM_A, CAM_B], depths, points, point_depths)


# ---- ground truth from the cameras


def test_verified_matches_keep_the_true_ones_exactly_and_reject_the_wrong_ones():
    rng = np.random.default_rng(1)
    world = np.r_[
        on_plane(CAM_A, rng.uniform((10, 10), (150, 110), (40, 2))),
        # a second surface in front of the plane: the scene is not planar
        (np.c_[rng.uniform(-1.5, 1.5, (20, 2)), np.full(20, 6.0)]),
    ]
    kp_a, _ = CAM_A.project(world)
    kp_b, _ = CAM_B.project(world)
    desc = rng.standard_normal((len(world), 128)).astype(np.float32)
    partner = np.arange(len(world))
    # wrong matches: swap pairs of points far from each other's epipolar line
    f = fundamental(CAM_A, CAM_B)
    wrong = [(i, i + 1) for i in range(0, 20, 2) if epipolar_distance(f, kp_a[[i]], kp_b[[i + 1]])[0] > 3]
    assert len(wrong) >= 5
    for i, j in wrong:
        partner[[i, j]] = partner[[j, i]]
    ia, ib, found = verified_matches(kp_a, desc, kp_b[partner], desc, CAM_A, CAM_B, CorrespondenceConfig())
    assert set(zip(ia.tolist(), partner[ib].tolist(), strict=True)) == {
        (i, i) for i in range(len(world)) if partner[i] == i
    }
    assert np.abs(found - world[ia]).max() < 1e-6  # the triangulated points are the scene's
    assert np.abs(CAM_B.project(found)[0] - kp_b[ia]).max() < 1e-6


def test_depths_survive_only_where_enough_views_agree():
    cfg = CorrespondenceConfig(min_views=3, depth_tolerance=0.01)
    observations = [
        (np.array([0, 1, 2]), np.array([5.0, 7.0, 9.0])),
        (np.array([0, 1]), np.array([5.02, 7.5])),  # keypoint 1: a wrong match in one pair
    ]
    idx, depth = consistent_depths(observations, cfg)
    assert idx.tolist() == [0]  # 1 disagrees, 2 is seen by one partner only
    assert depth[0] == pytest.approx(5.01)


def test_depth_map_is_exact_on_a_plane_and_empty_across_gaps():
    truth = plane_depth(CAM_A)
    ys, xs = np.mgrid[0:120:8, 0:160:8]
    pts = np.stack((xs.ravel(), ys.ravel()), 1).astype(np.float64)
    out = depth_map(pts, truth[ys.ravel(), xs.ravel()].astype(np.float64), SIZE, CorrespondenceConfig())
    known = out > 0
    assert known[:113, :153].all()  # the hull of the grid
    assert np.abs(out[known] - truth[known]).max() < 1e-4 * truth.max()  # inverse depth is affine on a plane
    sparse = depth_map(pts[::7], truth[ys.ravel(), xs.ravel()][::7], SIZE, CorrespondenceConfig(max_edge_px=10))
    assert not (sparse > 0).any()  # triangles longer than max_edge_px are holes


def test_depth_pair_maps_points_exactly_and_leaves_occluded_or_unknown_ones_out():
    pair = DepthPair(
        *(torch.tensor(m, dtype=torch.float32) for m in (K, K, *relative_pose(CAM_A, CAM_B))),
        torch.from_numpy(plane_depth(CAM_A)),
        torch.from_numpy(plane_depth(CAM_B)),
    )
    world = on_plane(CAM_A, np.array([[40.0, 30.0], [100.0, 70.0], [157.0, 60.0], [80.0, 20.0]]))
    pa, pb = CAM_A.project(world)[0], CAM_B.project(world)[0]
    gt, known = pair.to_other(torch.tensor(pa, dtype=torch.float32), 0)
    assert known[:2].all() and torch.allclose(gt[:2], torch.tensor(pb[:2], dtype=torch.float32), atol=2e-3)
    assert known[2] and not (0 <= gt[2, 0] <= 159)  # out of view b: known, so the NRE's outside bin applies
    back, _ = pair.to_other(gt[:2], 1)  # depth at the nearest pixel of the sub-pixel gt: a hundredth of a pixel off
    assert torch.allclose(back, torch.tensor(pa[:2], dtype=torch.float32), atol=0.05)
    pair.depth1[int(round(pb[3, 1])), int(round(pb[3, 0]))] *= 0.5  # something in front of point 3 in view b
    pair.depth0[30, 40] = 0.0  # no depth at point 0 in view a
    _, known = pair.to_other(torch.tensor(pa, dtype=torch.float32), 0)
    assert known.tolist() == [False, True, True, False]


# ---- crop pairs


def test_crops_keep_the_ground_truth_and_the_pixels_consistent():
    scene = plane_scene()
    cfg = RealConfig(crop_range=(0.5, 0.9), min_covisible=10)
    pair = covisible(scene, 0, 1, cfg.depth_tolerance)
    assert len(pair.points_a) > 200
    data = RealPairDataset([pair], cfg, 64, PhotometricConfig(enabled=False), seed=0)
    for index in range(4):
        s = data[index]
        geometry = DepthPair(*(s[k] for k in ("K0", "K1", "R01", "t01", "depth0", "depth1")))
        ys, xs = torch.meshgrid(torch.arange(4.0, 60, 3), torch.arange(4.0, 60, 3), indexing="ij")
        grid = torch.stack((xs.flatten(), ys.flatten()), 1)
        gt, known = geometry.to_other(grid, 0)
        seen = known & (gt[:, 0] > 1) & (gt[:, 0] < 62) & (gt[:, 1] > 1) & (gt[:, 1] < 62)
        assert seen.float().mean() > 0.2  # the crops share content
        img0, img1 = (s[f"image{i}"].permute(1, 2, 0).numpy() for i in (0, 1))
        pulled = cv2.remap(img1, *(gt[seen].numpy().astype(np.float32).T[:, None]), cv2.INTER_LINEAR)[0]
        here = img0[grid[seen, 1].long().numpy(), grid[seen, 0].long().numpy()]
        assert np.median(np.abs(pulled - here)) < 0.03
        # the crops' own depth maps agree with the projection: the geometry is the scene's, not the crop's
        _, z_there = CAM_B.project(on_plane(CAM_A, np.array([[80.0, 60.0]])))
        assert np.isfinite(z_there).all()


def test_mixed_pairs_take_the_share_of_real_ones_per_micro_batch():
    mixed = MixedPairs(["s"] * 100, ["r"] * 100, share=0.3, seed=0, group=2)
    kinds = [mixed[i] for i in range(100)]
    assert all(kinds[i] == kinds[i + 1] for i in range(0, 100, 2))  # one kind per micro-batch
    assert 0.15 < kinds.count("r") / 100 < 0.45
    assert all(MixedPairs(["s"] * 10, ["r"] * 10, 0.0, 0, 1)[i] == "s" for i in range(10))
    assert all(MixedPairs(["s"] * 10, ["r"] * 10, 1.0, 0, 1)[i] == "r" for i in range(10))


def test_a_held_out_building_is_never_trained_on():
    with pytest.raises(ValueError, match="castle"):
        RealConfig(train_scenes=("castle-P30", "fountain-P11"), val_scenes=("castle-P19",))
    RealConfig(train_scenes=("fountain-P11",), val_scenes=("castle-P19", "castle-P30"))


# ---- losses on real pairs


def keypoints(points: torch.Tensor, desc: torch.Tensor) -> SoftKeypoints:
    n = len(points)
    return SoftKeypoints(points, torch.full((n,), 0.5), torch.zeros(n), desc)


def test_losses_read_real_pairs_through_depth_and_leave_unknown_points_out():
    scene = plane_scene()
    r, t = relative_pose(CAM_A, CAM_B)
    pair = DepthPair(
        *(torch.tensor(m, dtype=torch.float32) for m in (K, K, r, t)), *(torch.from_numpy(d) for d in scene.depths)
    )
    world = on_plane(CAM_A, np.random.default_rng(2).uniform((20, 20), (140, 100), (30, 2)))
    pa = torch.tensor(CAM_A.project(world)[0], dtype=torch.float32)
    pb = torch.tensor(CAM_B.project(world)[0], dtype=torch.float32)
    assert reprojection_loss(pa, pb, pair, 120, 160, 5.0)[0] < 0.01  # exact correspondences: no error
    rp, n = reprojection_loss(pa, pb + torch.tensor([1.0, 0.0]), pair, 120, 160, 5.0)
    assert n == 30 and rp == pytest.approx(1.0, abs=0.02)  # shifted by a pixel: a pixel (L1, symmetric)

    # descriptors: one per pixel of each view, equal at corresponding points
    desc_a = torch.nn.functional.normalize(torch.randn(16, 120, 160), dim=0)
    gt_map, _ = pair.to_other(pa, 0)
    desc_b = torch.nn.functional.normalize(torch.randn(16, 120, 160), dim=0)
    px_b = gt_map.round().long()
    desc_b[:, px_b[:, 1], px_b[:, 0]] = desc_a[:, pa[:, 1].round().long(), pa[:, 0].round().long()]
    scores = torch.full((120, 160), 0.5)
    out_a = keypoints(pa.round(), desc_a[:, pa[:, 1].round().long(), pa[:, 0].round().long()].T)
    out_b = keypoints(px_b.float(), desc_b[:, px_b[:, 1], px_b[:, 0]].T)
    cfg = LossConfig(t_des=0.02)
    matched = pair_losses(out_a, out_b, (scores, scores, desc_a, desc_b), pair, cfg)
    shuffled = keypoints(out_b.keypoints, out_b.descriptors[torch.randperm(30)])
    assert matched["ds"] < 0.5 * pair_losses(out_a, shuffled, (scores, scores, desc_a, desc_b), pair, cfg)["ds"]

    blind = DepthPair(pair.K0, pair.K1, pair.R01, pair.t01, torch.zeros(120, 160), torch.zeros(120, 160))
    nothing = pair_losses(out_a, out_b, (scores, scores, desc_a, desc_b), blind, cfg)
    assert nothing["ds"] == 0 and nothing["rp"] == 0 and nothing["matches"] == 0  # no depth: no ground truth


# ---- configuration and a tiny run


def test_a_config_states_only_what_it_changes_from_its_base(tmp_path: Path):
    (tmp_path / "base.yaml").write_text("steps: 10\nlr: 0.001\ndata:\n  size: 64\n  val_pairs: 3\n")
    (tmp_path / "variant.yaml").write_text("base: base.yaml\nlr: 0.0003\ndata:\n  val_pairs: 5\n")
    assert read_settings(tmp_path / "variant.yaml") == {"steps": 10, "lr": 0.0003, "data": {"size": 64, "val_pairs": 5}}


def test_frozen_batchnorm_keeps_the_initial_statistics_while_the_rest_trains():
    net = ALNet(model_config("alike-t"))
    before = {k: v.clone() for k, v in net.state_dict().items() if "running" in k}
    training_mode(net, TrainConfig(freeze_batchnorm=True))
    net.dense_maps(torch.rand(2, 3, 32, 32))[0].mean().backward()
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    assert net.training and any(p.grad is not None for p in net.parameters())
    training_mode(net, TrainConfig())
    net.dense_maps(torch.rand(2, 3, 32, 32))
    assert not all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())


def tiny_scene(name: str, folder: Path, count: int = 3, width: int = 256) -> None:
    """The first `count` views of a Strecha scene at `width` px, cameras rescaled (x' = s (x + 0.5) - 0.5)."""
    (folder / name).mkdir(parents=True)
    for path in sorted((require(STRECHA) / name).glob("*.jpg"))[:count]:
        img = cv2.imread(str(path))
        s = width / img.shape[1]
        small = cv2.resize(img, (width, round(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(folder / name / path.name), small)
        lines = Path(f"{path}.camera").read_text().splitlines()
        k = np.array([[float(v) for v in line.split()] for line in lines[:3]])
        k[:2] *= s
        k[:2, 2] += 0.5 * s - 0.5
        lines[:3] = [" ".join(f"{v:.6f}" for v in row) for row in k]
        lines[8] = f"{small.shape[1]} {small.shape[0]}"
        (folder / name / f"{path.name}.camera").write_text("\n".join(lines) + "\n")


def test_tiny_training_run_on_strecha_views(tmp_path: Path):
    strecha = tmp_path / "strecha"
    tiny_scene("fountain-P11", strecha)
    tiny_scene("castle-P19", strecha)
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(
            str(photos / f"{i}.png"), cv2.GaussianBlur((rng.random((48, 64, 3)) * 255).astype(np.uint8), (0, 0), 1)
        )
    out = tmp_path / "run"
    (tmp_path / "train.yaml").write_text(
        f"out_dir: {out}\nsteps: 2\nbatch_size: 1\naccumulate: 2\ntop_k: 32\nval_top_k: 16\nthreads: 1\nlog_every: 1\n"
        f"val_every: 2\nwarmup_steps: 1\nbest_metric: real_epi_correct\ndata:\n  folder: {photos}\n  size: 64\n"
        f"  val_images: 1\n  val_pairs: 1\nreal:\n  folder: {strecha}\n  train_scenes: [fountain-P11]\n"
        f"  val_scenes: [castle-P19]\n  share: 1.0\n  cache_dir: {tmp_path / 'cache'}\n  min_covisible: 20\n"
        "  val_pairs: 1\n  val_width: 128\n  val_height: 96\n  val_top_k: 100\n"
        "  correspondences:\n    max_gap: 2\n    min_views: 2\n    sift_features: 1500\n"
    )
    assert train_main(["--config", str(tmp_path / "train.yaml")]) == 0
    rows = list(csv.DictReader((out / "train.csv").open()))
    assert len(rows) == 2 and all(float(r["ds"]) > 0 for r in rows)  # real pairs gave keypoints a ground truth
    val = list(csv.DictReader((out / "val.csv").open()))
    assert float(val[0]["real_matches"]) > 0 and 0 <= float(val[0]["real_epi_precision"]) <= 1
    assert (out / "best.pt").exists() and len(list((tmp_path / "cache").glob("*.npz"))) == 2
