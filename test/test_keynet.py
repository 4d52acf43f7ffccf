"""Key.Net: the handcrafted filters, the M-SIP loss on cases with known answers, the extractor behind the
common contract, and its training task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_textured_image, write_textured_photos

from alike_ros import extractors
from alike_ros.detection.dkd import DetectorConfig
from alike_ros.extractors import keynet as keynet_extractor
from alike_ros.extractors.keynet import KeyNetExtractor, load_keynet, scaled
from alike_ros.model.keynet import MODEL_NAME, KeyNet, KeyNetConfig
from alike_ros.model.residual import ResidualConfig, ResidualDescriptorNet
from alike_ros.model.weights import WeightsError
from alike_ros.training.cli import main as train_main
from alike_ros.training.msip import MsipConfig, ip_loss, msip_loss, warp_map, windows_of


def test_handcrafted_filters_are_the_derivatives_of_harris_and_hessian():
    filters = KeyNet().handcrafted
    ys, xs = torch.meshgrid(torch.arange(24.0), torch.arange(24.0), indexing="ij")
    quadratic = (0.5 * xs**2 + 2 * xs * ys - ys**2)[None, None]
    ix, iy, ixiy, ix2, iy2, ixx, iyy, ixy, hess, ixy2 = filters(quadratic)[0, :, 12, 12]
    assert (ix, iy) == (pytest.approx(12 + 24), pytest.approx(24 - 24))  # x + 2y, 2x - 2y at (12, 12)
    assert (ixx, iyy, ixy) == (pytest.approx(1.0), pytest.approx(-2.0), pytest.approx(2.0))
    assert (ixiy, ix2, iy2, hess, ixy2) == (
        pytest.approx(ix * iy),
        pytest.approx(ix**2),
        pytest.approx(iy**2),
        pytest.approx(-2.0),
        pytest.approx(4.0),
    )
    assert not any(p.requires_grad for p in filters.parameters())  # frozen: they are buffers


def test_keynet_is_shallow_and_keeps_the_image_size():
    net = KeyNet().eval()
    assert sum(p.numel() for p in net.parameters()) < 10_000
    out = net(torch.rand(1, 1, 77, 101))
    assert out.shape == (1, 1, 77, 101)


def test_windows_are_cut_row_major():
    values = torch.arange(36.0).view(1, 6, 6)
    windows = windows_of(values, 3)
    assert windows.shape == (2, 2, 9)
    assert windows[0, 1].tolist() == [3, 4, 5, 9, 10, 11, 15, 16, 17]


def test_the_identity_warp_changes_nothing():
    values = torch.rand(1, 16, 20)
    assert torch.allclose(warp_map(values, torch.eye(3)), values, atol=1e-5)


def peaked(positions: list[tuple[int, int]], size: int = 16, height: float = 8.0) -> torch.Tensor:
    logits = torch.full((1, size, size), -4.0)
    for x, y in positions:
        logits[0, y, x] = height
    return logits


def test_ip_loss_is_zero_where_both_views_peak_together_and_grows_with_the_offset():
    valid = torch.ones(1, 16, 16, dtype=torch.bool)
    others = [(12, 2), (2, 12), (12, 10)]  # one peak in each of the four 8 x 8 windows
    target = torch.sigmoid(peaked([(3, 5), *others]))
    same = ip_loss(peaked([(3, 5), *others], height=30.0), target, target, valid, 8)
    near = ip_loss(peaked([(4, 5), *others], height=30.0), target, target, valid, 8)
    far = ip_loss(peaked([(6, 7), *others], height=30.0), target, target, valid, 8)
    assert same.item() == pytest.approx(0.0, abs=1e-6) and 0 < near < far
    # a flat response has its soft position at the window centre, not where the other view peaks: no collapse
    assert ip_loss(torch.zeros(1, 16, 16), target, target, valid, 8) > 1.0
    # windows outside the common area do not count
    assert ip_loss(peaked([(6, 7)]), target, target, torch.zeros(1, 16, 16, dtype=torch.bool), 8) == 0


def test_msip_descent_moves_the_soft_position_to_where_the_other_view_peaks():
    logits = torch.zeros(2, 1, 8, 8)  # view 0 starts flat, as an untrained response does
    logits[1, 0] = peaked([(6, 4)], size=8, height=6.0)[0]  # view 1 peaks at (6, 4) (identity warp)
    masks = (torch.ones(8, 8, dtype=torch.bool),) * 2
    cfg = MsipConfig(windows=(8,), weights=(1.0,))

    def soft_position(view0: torch.Tensor) -> tuple[float, float]:
        weights = torch.softmax(windows_of(view0, 8)[0, 0], 0)
        return float((weights * torch.arange(8.0).repeat(8)).sum()), float(
            (weights * torch.arange(8.0).repeat_interleave(8)).sum()
        )

    losses, positions = [], []
    for _ in range(20):
        logits.requires_grad_(True)
        loss = msip_loss(logits, torch.eye(3), masks, cfg)
        loss.backward()
        losses.append(loss.item())
        positions.append(soft_position(logits[0].detach()))
        logits = torch.cat((logits[:1] - 2.0 * logits.grad[:1], logits[1:])).detach()  # view 0 learns
    assert losses[-1] < 0.3 * losses[0]
    assert positions[0] == (3.5, 3.5) and positions[-1] == pytest.approx((6.0, 4.0), abs=0.25)


SMALL = KeyNetConfig(filters=4, blocks=2)


def save_keynet(path: Path, cfg: KeyNetConfig = SMALL) -> Path:
    torch.manual_seed(0)
    net = KeyNet(cfg)
    torch.save(
        {"state_dict": net.state_dict(), "model": MODEL_NAME, "step": 0, "note": "", "config": cfg.__dict__}, path
    )
    return path


def small_extractor(tmp_path: Path, detector: DetectorConfig | None = None) -> KeyNetExtractor:
    torch.manual_seed(0)
    describer = ResidualDescriptorNet(ResidualConfig(channels=(4, 4, 8, 8), head=8, cnn_dim=8, refine_dim=8))
    keynet = load_keynet(save_keynet(tmp_path / "keynet.pth"))
    return KeyNetExtractor(keynet, describer, extractors.Options(device="cpu", detector=detector))


def test_the_extractor_keeps_the_contract(tmp_path: Path):
    extractor = small_extractor(tmp_path, DetectorConfig(top_k=40, score_threshold=0.0))
    image = make_textured_image()
    features = extractor(image)
    assert len(features) == 40 and features.descriptors.shape == (40, 16)
    assert np.all(np.diff(features.scores) <= 0) and features.scores.min() >= 0 and features.scores.max() <= 1
    assert np.allclose(np.linalg.norm(features.descriptors, axis=1), 1, atol=1e-5)
    assert np.all((features.keypoints >= 0) & (features.keypoints <= [319, 239]))
    assert np.array_equal(extractor(image).descriptors, features.descriptors)
    with pytest.raises(ValueError, match="empty"):
        extractor(np.zeros((4, 0), np.uint8))


class IntensityResponse(torch.nn.Module):
    """A stand-in for Key.Net whose response is the grey image itself (unsaturated): it peaks where the image is
    brightest."""

    def forward(self, grey: torch.Tensor) -> torch.Tensor:
        return 8.0 * (grey - 0.5)


@pytest.mark.parametrize("scale", [1, 2, 3])
@pytest.mark.parametrize("centre", [(100.3, 60.7), (99.5, 60.25)])
def test_points_found_on_the_upscaled_response_come_back_in_the_image_pixels(tmp_path: Path, scale, centre):
    """A bright spot off the pixel grid is found where it is at every detection scale: the map `scale` times finer
    is read in the image's own pixel convention (centre of pixel x at x); a half-pixel slip of the finer map would
    be 0.25 px here at scale 2."""
    centre = np.array(centre)
    ys, xs = np.mgrid[0:120, 0:160]
    spot = np.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * 1.5**2))
    image = np.repeat((40 + 200 * spot).astype(np.uint8)[..., None], 3, axis=2)
    extractor = small_extractor(tmp_path, DetectorConfig.strongest(1, upscale=scale))
    extractor.keynet = IntensityResponse()
    (point,) = extractor(image).keypoints
    assert np.abs(point - centre).max() < 0.05, point


def test_the_detector_settings_grow_with_the_detection_scale():
    settings = DetectorConfig(window_size=5, border=2, grid_cell=64, top_k=300, score_threshold=0.1)
    assert scaled(settings, 1) is settings
    finer = scaled(settings, 2)
    assert (finer.window_size, finer.border, finer.grid_cell) == (9, 4, 128)  # the window stays odd
    assert (finer.top_k, finer.score_threshold, finer.temperature) == (300, 0.1, settings.temperature)
    assert scaled(settings, 3).window_size == 15


def test_an_image_too_large_once_upscaled_is_refused_with_the_way_out(tmp_path: Path, monkeypatch):
    extractor = small_extractor(tmp_path, DetectorConfig(upscale=2))
    monkeypatch.setattr(keynet_extractor, "MAX_PIXELS", 200_000)  # 320 x 240 fits; 640 x 480 upscaled does not
    with pytest.raises(ValueError, match="upscaled 2x: 320x240 becomes 640x480, over 200000 pixels; set max_side"):
        extractor(make_textured_image())
    assert len(extractor(make_textured_image(), max_side=200)) > 0


def test_weights_are_checked_and_the_registry_knows_the_model(tmp_path: Path):
    assert MODEL_NAME in extractors.names()
    other = tmp_path / "other.pth"
    torch.save({"state_dict": {}, "model": "sift-residual", "step": 0, "config": {}}, other)
    with pytest.raises(WeightsError, match="not a keynet weights file"):
        load_keynet(other)
    wrong = save_keynet(tmp_path / "wrong.pth")
    saved = torch.load(wrong, weights_only=True)
    saved["config"]["filters"] = 8
    torch.save(saved, wrong)
    with pytest.raises(WeightsError, match="does not fit"):
        load_keynet(wrong)


def test_training_smoke_export_and_validate(tmp_path: Path):
    photos = write_textured_photos(tmp_path / "photos")
    out = tmp_path / "run"
    config = tmp_path / "train.yaml"
    config.write_text(
        f"model: {MODEL_NAME}\nout_dir: {out}\nsteps: 2\nbatch_size: 2\naccumulate: 1\nval_top_k: 20\nthreads: 1\n"
        f"log_every: 1\nval_every: 2\nwarmup_steps: 1\nchannels_last: false\n"
        f"data:\n  folder: {photos}\n  size: 64\n  cache_side: 128\n  val_images: 1\n  val_pairs: 1\n"
        "keynet:\n  filters: 4\n  blocks: 2\nmsip:\n  windows: [8, 16]\n  weights: [4.0, 1.0]\n"
    )
    assert train_main(["--config", str(config)]) == 0
    header = (out / "val.csv").read_text().splitlines()[0].split(",")
    assert {"repeatability", "sift_repeatability", "correct_matches"} <= set(header)
    exported = tmp_path / "exported.pth"
    assert train_main(["--export", str(out / "last.pt"), "--out", str(exported)]) == 0
    assert load_keynet(exported).cfg == KeyNetConfig(filters=4, blocks=2)
    assert train_main(["--config", str(config), "--validate", str(exported)]) == 0
    with pytest.raises(ValueError, match="windows"):
        MsipConfig(windows=(8, 16), weights=(1.0,))
