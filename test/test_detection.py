"""DKD on hand-made score maps: NMS windows, border, selection semantics, sub-pixel refinement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alike_ros.detection.dkd import (
    DetectorConfig,
    detect,
    max_filter,
    select_peaks,
    separable_max_filter,
    simple_nms,
)


def peaks_map(points: list[tuple[int, int, float]], size=(64, 80)) -> torch.Tensor:
    scores = torch.zeros(size)
    for x, y, s in points:
        scores[y, x] = s
    return scores


def test_max_filter_equals_2d_max_pool():
    x = torch.rand(37, 53) - 2  # negative values: the border padding must never win
    for window in (3, 5, 7, 9):
        expected = torch.nn.functional.max_pool2d(x[None], window, stride=1, padding=window // 2)[0]
        assert torch.equal(max_filter(x, window), expected)  # OpenCV on the CPU
        assert torch.equal(separable_max_filter(x, window), expected)  # the path CUDA devices take


@pytest.mark.parametrize("window", [3, 5, 7, 9])
def test_nms_survivors_are_farther_apart_than_the_radius(window):
    scores = torch.rand(96, 128)
    kept = torch.nonzero(simple_nms(scores, window) > 0).float()
    chebyshev = torch.cdist(kept, kept, p=float("inf"))
    chebyshev.fill_diagonal_(float("inf"))
    assert chebyshev.min() > window // 2
    # larger windows keep fewer peaks
    if window > 3:
        assert len(kept) < (simple_nms(scores, window - 2) > 0).sum()


def test_nms_keeps_isolated_peaks_and_drops_their_neighbours():
    scores = peaks_map([(20, 20, 0.9), (22, 20, 0.5), (40, 30, 0.6)])
    nms = simple_nms(scores, 5)
    assert nms[20, 20] == pytest.approx(0.9) and nms[30, 40] == pytest.approx(0.6)
    assert nms[20, 22] == 0  # within the 5x5 window of a stronger peak
    assert simple_nms(scores, 3)[20, 22] == pytest.approx(0.5)  # outside a 3x3 window


def test_threshold_mode_is_strict_and_sorted():
    scores = peaks_map([(10, 10, 0.3), (30, 10, 0.2), (50, 10, 0.7), (10, 40, 0.25)])
    peaks = select_peaks(simple_nms(scores, 5), DetectorConfig(top_k=-1, score_threshold=0.2))
    assert peaks.tolist() == [[50, 10], [10, 10], [10, 40]]  # 0.2 is not above 0.2


def test_top_k_and_cap():
    pts = [(8 + 6 * i, 20, 0.1 + 0.01 * i) for i in range(10)]
    nms = simple_nms(peaks_map(pts), 5)
    top3 = select_peaks(nms, DetectorConfig(top_k=3, score_threshold=0.0))
    assert top3[:, 0].tolist() == [62, 56, 50]
    capped = select_peaks(nms, DetectorConfig(top_k=-1, score_threshold=0.0, max_keypoints=4))
    assert capped[:, 0].tolist() == [62, 56, 50, 44]
    assert len(select_peaks(nms, DetectorConfig(top_k=100, score_threshold=0.15))) == 4  # threshold still applies


def test_border_is_upstreams_asymmetric_margin():
    h, w = 64, 80
    pts = [(2, 30, 0.9), (3, 40, 0.9), (w - 3, 30, 0.9), (w - 2, 40, 0.9), (40, 2, 0.9), (40, h - 3, 0.9)]
    peaks = select_peaks(simple_nms(peaks_map(pts, (h, w)), 5), DetectorConfig(score_threshold=0.5))
    assert sorted(map(tuple, peaks.tolist())) == sorted([(3, 40), (w - 3, 30), (40, h - 3)])
    wide = select_peaks(simple_nms(peaks_map(pts, (h, w)), 5), DetectorConfig(score_threshold=0.5, border=8))
    assert len(wide) == 0


@pytest.mark.parametrize("window", [3, 5, 7])
@pytest.mark.parametrize("offset", [(0.3, -0.2), (-0.45, 0.4), (0.0, 0.0)])
def test_soft_argmax_recovers_a_subpixel_peak(window, offset):
    """Scores T * log(gaussian) make the softmax a discrete gaussian centred on the true peak."""
    cfg = DetectorConfig(window_size=window, score_threshold=0.8)  # only the true peak clears it
    true = np.array([40 + offset[0], 30 + offset[1]])
    yy, xx = np.mgrid[:64, :80]
    sigma = 0.6
    log_gauss = -((xx - true[0]) ** 2 + (yy - true[1]) ** 2) / (2 * sigma**2)
    scores = torch.from_numpy(np.clip(0.9 + cfg.temperature * log_gauss, 0, 1)).float()
    keypoints, kp_scores = detect(scores, cfg)
    assert len(keypoints) == 1
    # a 3x3 window truncates the gaussian tail, which biases it towards the integer peak
    np.testing.assert_allclose(keypoints[0].numpy(), true, atol=0.1 if window == 3 else 0.01)
    # the score is re-sampled bilinearly at the refined position
    (x, y), s = keypoints[0].tolist(), scores.numpy()
    x0, y0, fx, fy = int(x), int(y), x - int(x), y - int(y)
    expected = (s[y0, x0] * (1 - fx) + s[y0, x0 + 1] * fx) * (1 - fy) + (
        s[y0 + 1, x0] * (1 - fx) + s[y0 + 1, x0 + 1] * fx
    ) * fy
    assert kp_scores[0].item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("window", [3, 5, 7])
def test_detection_is_exactly_translation_equivariant(window):
    """DKD itself has no position dependence: shifting the score map shifts every interior keypoint exactly."""
    rng = np.random.default_rng(3)
    scores = torch.from_numpy(rng.random((96, 128), dtype=np.float32))
    cfg = DetectorConfig(window_size=window, score_threshold=0.5)
    dy, dx = 11, 17
    a, a_scores = detect(scores, cfg)
    b, b_scores = detect(scores[dy:, dx:].contiguous(), cfg)
    margin = 2 * window + cfg.border  # NMS and refinement look this far
    moved = a - torch.tensor([dx, dy])
    inside = (moved >= margin).all(dim=1) & (moved[:, 0] < 128 - dx - margin) & (moved[:, 1] < 96 - dy - margin)
    assert inside.sum() > 50
    dist, nearest = torch.cdist(moved[inside].double(), b.double()).min(dim=1)  # double: cdist uses a matmul
    assert dist.max().item() < 1e-4
    torch.testing.assert_close(b_scores[nearest], a_scores[inside])


def test_config_validation():
    for bad in (
        dict(window_size=4),
        dict(window_size=1),
        dict(max_keypoints=0),
        dict(score_threshold=1.0),
        dict(score_threshold=-0.1),
        dict(border=-1),
        dict(temperature=0.0),
        dict(upscale=0),
        dict(upscale=5),
    ):
        with pytest.raises(ValueError):
            DetectorConfig(**bad).validate()


def detect_before(scores: torch.Tensor, cfg: DetectorConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """DKD as it was before the CPU fast path (issue 13), in plain torch: the reference for `detect`."""

    def pool(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.max_pool2d(x[None], cfg.window_size, stride=1, padding=cfg.radius)[0]

    is_max = scores == pool(scores)
    for _ in range(2):
        suppressed = pool(is_max.float()) > 0
        rest = scores.masked_fill(suppressed, 0.0)
        is_max |= (rest == pool(rest)) & ~suppressed
    nms = scores.masked_fill(~is_max, 0.0)
    h, w = nms.shape
    b = max(cfg.border, cfg.radius)
    if h <= 2 * b + 1 or w <= 2 * b + 1:
        return torch.zeros((0, 2)), torch.zeros(0)
    inner = torch.zeros_like(nms)
    inner[b + 1 : h - b, b + 1 : w - b] = nms[b + 1 : h - b, b + 1 : w - b]
    flat = inner.flatten()
    candidates = torch.nonzero(flat > cfg.score_threshold).squeeze(1)
    limit = cfg.max_keypoints if cfg.top_k <= 0 else min(cfg.top_k, cfg.max_keypoints)
    order = torch.argsort(flat[candidates], descending=True, stable=True)[:limit]
    idx = candidates[order]
    peaks = torch.stack((idx % w, idx // w), dim=1)
    r = torch.arange(-cfg.radius, cfg.radius + 1, dtype=torch.float32)
    dy, dx = torch.meshgrid(r, r, indexing="ij")
    offsets = torch.stack((dx.flatten(), dy.flatten()), dim=1)
    cells = peaks[:, None, :] + offsets.long()[None]
    patch = scores.flatten()[cells[..., 1] * w + cells[..., 0]]
    keypoints = peaks.float() + torch.softmax(patch / cfg.temperature, dim=1) @ offsets
    x, y = keypoints[:, 0], keypoints[:, 1]
    x0, y0 = x.floor().clamp(0, w - 1), y.floor().clamp(0, h - 1)
    fx, fy = x - x0, y - y0
    x1, y1 = (x0 + 1).clamp(max=w - 1), (y0 + 1).clamp(max=h - 1)
    corners = torch.stack(
        (torch.stack((x0, y0), 1), torch.stack((x1, y0), 1), torch.stack((x0, y1), 1), torch.stack((x1, y1), 1)), 1
    ).long()
    weights = torch.stack(((1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy), dim=1)
    values = scores[None][:, corners[..., 1].flatten(), corners[..., 0].flatten()].T.reshape(len(peaks), 4, 1)
    return keypoints, (weights[..., None] * values).sum(dim=1)[:, 0]


def random_score_maps() -> list[torch.Tensor]:
    """Uniform noise (dense peaks), smooth blobs, plateaus (exact ties everywhere), zeros, odd and tiny sizes,
    a strided view."""
    rng = np.random.default_rng(11)
    smooth = torch.nn.functional.avg_pool2d(torch.from_numpy(rng.random((1, 130, 170), dtype=np.float32)), 5, 1)[0]
    plateaus = torch.from_numpy(np.round(rng.random((97, 123)) * 6).astype(np.float32) / 6)
    sparse = torch.from_numpy(rng.random((64, 80), dtype=np.float32) * (rng.random((64, 80)) < 0.05))
    return [
        torch.from_numpy(rng.random((120, 160), dtype=np.float32)),
        smooth,
        plateaus,
        sparse,
        torch.from_numpy(rng.random((9, 40), dtype=np.float32)),
        torch.from_numpy(rng.random((50, 70), dtype=np.float32))[:, 3:67],  # a view, not contiguous
        torch.from_numpy(rng.random((6, 6), dtype=np.float32)),
    ]


@pytest.mark.parametrize(
    "cfg",
    [
        DetectorConfig(top_k=300, score_threshold=0.0, selection="top"),
        DetectorConfig(top_k=-1, score_threshold=0.2, selection="top"),
        # the cut falls among tied plateaus
        DetectorConfig(top_k=-1, score_threshold=0.5, max_keypoints=37, selection="top"),
        DetectorConfig(window_size=3, top_k=50, score_threshold=0.3, selection="top"),
        DetectorConfig(window_size=7, top_k=-1, score_threshold=0.0, border=4, temperature=0.5, selection="top"),
    ],
)
def test_detect_is_identical_to_the_implementation_before(cfg):
    """The CPU fast path (OpenCV NMS, numpy selection) gives bit-identical keypoints, scores and order."""
    for scores in random_score_maps():
        keypoints, kp_scores = detect(scores, cfg)
        ref_keypoints, ref_scores = detect_before(scores, cfg)
        assert keypoints.dtype == torch.float32 and kp_scores.dtype == torch.float32
        assert torch.equal(keypoints, ref_keypoints.float()), scores.shape
        assert torch.equal(kp_scores, ref_scores.float()), scores.shape


def test_nms_is_identical_on_every_path():
    """`simple_nms` (OpenCV masks on the CPU) equals the torch pools that CUDA devices run."""
    for scores in random_score_maps():
        for window in (3, 5, 7):
            ref = torch.nn.functional.max_pool2d
            is_max = scores == ref(scores[None], window, 1, window // 2)[0]
            for _ in range(2):
                suppressed = ref(is_max.float()[None], window, 1, window // 2)[0] > 0
                rest = scores.masked_fill(suppressed, 0.0)
                is_max |= (rest == ref(rest[None], window, 1, window // 2)[0]) & ~suppressed
            assert torch.equal(simple_nms(scores, window), scores.masked_fill(~is_max, 0.0))


def test_the_device_path_is_identical_too(monkeypatch):
    """What a GPU runs (torch NMS rounds and selection), exercised here on the CPU."""
    import alike_ros.detection.dkd as dkd

    monkeypatch.setattr(dkd, "_cpu_map", lambda scores: False)
    for cfg in (DetectorConfig.strongest(300), DetectorConfig(score_threshold=0.5, max_keypoints=37, selection="top")):
        for scores in random_score_maps():
            keypoints, kp_scores = detect(scores, cfg)
            ref_keypoints, ref_scores = detect_before(scores, cfg)
            assert torch.equal(keypoints, ref_keypoints.float()) and torch.equal(kp_scores, ref_scores.float())
