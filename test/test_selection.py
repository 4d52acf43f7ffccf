"""Where keypoints may lie and how the budget is spent: the mask (no keypoint in a masked pixel, sub-pixel positions
too, the budget going to the rest) and the grid selection, for every model and through every way in (the library,
the pipeline, `extract`, `bag process`, the node's parameters)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import make_textured_image
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import PointCloud2
from test_bag import SIZE, by_topic, settings, weights  # noqa: F401 (weights: a fixture)

from alike_ros import extractors
from alike_ros.bag.process import process_bag
from alike_ros.bag.sample import SampleConfig, make_sample
from alike_ros.cli import extract as extract_cli
from alike_ros.detection.dkd import DetectorConfig
from alike_ros.detection.selection import allowed_pixels, best_first, inside_mask, load_mask, ranked, spread
from alike_ros.parameter_table import Settings, validate
from alike_ros.pipeline import FramePipeline, PipelineConfig
from alike_ros.ros.messages import decode_features

SHIPPED = ("alike-t", "keynet", "mdnet", "unsuperpoint", "sift-residual")


def budget(k: int, **grid) -> DetectorConfig:
    return DetectorConfig(top_k=k, score_threshold=0.0, max_keypoints=k, **grid)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """A 240 x 320 RGB image with texture everywhere, so every model finds more points than the budgets below."""
    grey = make_textured_image()
    rng = np.random.default_rng(3)
    noise = cv2.GaussianBlur(rng.integers(0, 255, grey.shape).astype(np.uint8), (0, 0), 1.5)
    mixed = cv2.addWeighted(grey, 0.6, noise, 0.4, 0)
    return np.repeat(mixed[..., None], 3, axis=2)


@pytest.fixture(scope="module")
def models() -> dict[str, extractors.FeatureExtractor]:
    return {name: extractors.build(name, extractors.Options(device="cpu")) for name in SHIPPED}


def combed_mask(size: tuple[int, int], stripe: int = 1) -> np.ndarray:
    """Stripes of `stripe` columns masked, every other one, and a disc: refined positions fall between pixels, so
    many would land in masked columns if nothing held them out."""
    mask = np.full(size, 255, np.uint8)
    mask[:, np.arange(size[1]) // stripe % 2 == 0] = 0
    cv2.circle(mask, (size[1] // 3, size[0] // 2), 40, 0, -1)
    return mask


# ---------------------------------------------------------------- selection rules


def test_grid_gives_every_cell_its_quota_then_the_strongest_of_the_rest():
    rng = np.random.default_rng(0)
    size, cell, limit = (100, 160), 40, 60  # 3 x 4 cells: a quota of 5
    points = rng.uniform(0, [159, 99], (500, 2))
    points[:300] = rng.uniform(0, 39, (300, 2))  # most points in the top-left cell
    scores = rng.random(500).astype(np.float32)
    scores[:300] += 1.0  # ...and the strongest
    kept = spread(points, scores, limit, size, cell)
    assert len(kept) == limit and len(set(kept)) == limit
    assert np.all(np.diff(scores[kept]) <= 0), "best first"
    pixels = np.floor(points + 0.5).astype(int)  # the pixel a point lies in
    cells = pixels[:, 1] // cell * 4 + pixels[:, 0] // cell
    for c in range(12):
        members = np.flatnonzero(cells == c)
        best = members[np.argsort(-scores[members])][:5]
        assert set(best) <= set(kept), f"cell {c} lost one of its 5 best"
    quota = {i for c in range(12) for i in np.flatnonzero(cells == c)[np.argsort(-scores[cells == c])][:5]}
    others = np.array(sorted(set(range(500)) - quota))
    extra = set(kept) - quota
    assert extra == set(others[np.argsort(-scores[others])][: limit - len(quota)]), "the rest: the strongest"
    top = best_first(scores, limit)
    assert len(np.unique(cells[kept])) > len(np.unique(cells[top])), "spread wider than the top-k"


def test_the_radix_ranking_is_a_stable_descending_sort():
    rng = np.random.default_rng(1)
    values = np.concatenate((rng.normal(size=3000), [-0.0, 0.0, -0.0, 0.0, 1.0, 1.0, -2.5, -2.5])).astype(np.float32)
    values[:500] = values[500:1000]  # many ties, kept in position order
    rng.shuffle(values)
    assert np.array_equal(ranked(values), np.argsort(-values, kind="stable"))


def test_grid_with_fewer_candidates_than_the_budget_keeps_them_all():
    points = np.array([[1.0, 1.0], [50.0, 50.0], [2.0, 3.0]])
    scores = np.array([0.5, 0.9, 0.7], np.float32)
    assert spread(points, scores, 10, (64, 64), 16).tolist() == [1, 2, 0]


def test_a_downscaled_mask_allows_only_pixels_wholly_allowed():
    mask = np.ones((480, 640), bool)
    mask[100:103, 200:201] = False
    allowed = allowed_pixels(mask, (317, 423))  # a non-integer scale
    ys, xs = np.mgrid[:317, :423]
    # each pixel of the small map covers the big one's [j * s, (j + 1) * s); those touching the hole are out
    sx, sy = 640 / 423, 480 / 317
    touches = (xs * sx < 201) & ((xs + 1) * sx > 200) & (ys * sy < 103) & ((ys + 1) * sy > 100)
    assert np.array_equal(~allowed, touches)


def test_a_mask_that_cannot_be_read_is_refused_with_its_path(tmp_path):
    (tmp_path / "mask.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read mask image .*mask.png"):
        load_mask(tmp_path / "mask.png")


# ---------------------------------------------------------------- every model


@pytest.mark.parametrize("model", SHIPPED)
@pytest.mark.parametrize("max_side", [0, 250])
def test_no_keypoint_of_any_model_lies_in_a_masked_pixel(models, image, model, max_side):
    extractor = models[model]
    extractor.detector = budget(40)  # fewer than every model finds in the allowed part (SIFT: 54 at max_side 250)
    # downscaled, a pixel the network sees covers parts of 2-3 columns: one of 1-column stripes would allow none
    mask = combed_mask(image.shape[:2], stripe=1 if max_side == 0 else 4)
    plain = extractor(image, max_side=max_side)
    masked = extractor(image, max_side=max_side, mask=mask)
    assert (~inside_mask(plain.keypoints, mask != 0)).sum() > 10, "the unmasked points would fall in the mask"
    assert inside_mask(masked.keypoints, mask != 0).all()
    # the budget goes to the allowed pixels: as many points as without the mask
    assert len(masked) == len(plain) == 40
    assert len(masked.descriptors) == len(masked.scores) == len(masked)


@pytest.mark.parametrize("model", SHIPPED)
def test_grid_selection_keeps_the_budget_and_covers_more_cells(models, image, model):
    extractor = models[model]
    extractor.detector = budget(150)
    top = extractor(image)
    extractor.detector = budget(150, selection="grid", grid_cell=40)
    grid = extractor(image)

    def cells(features):
        return len({(int(x) // 40, int(y) // 40) for x, y in features.keypoints})

    assert len(grid) == len(top) == 150
    assert cells(grid) > cells(top)


def test_a_mask_of_another_size_is_a_clear_error(models, image):
    with pytest.raises(ValueError, match="the mask is 320x200 but the image is 320x240"):
        models["alike-t"](image, mask=np.ones((200, 320), np.uint8))


def test_a_mask_of_zeros_gives_no_keypoints(models, image):
    models["alike-t"].detector = budget(100)
    assert len(models["alike-t"](image, mask=np.zeros(image.shape[:2], np.uint8))) == 0


# ---------------------------------------------------------------- the ways in


@pytest.fixture
def mask_file(tmp_path, image) -> Path:
    path = tmp_path / "mask.png"
    cv2.imwrite(str(path), combed_mask(image.shape[:2]))
    return path


def test_the_pipeline_reads_its_mask_once_and_follows_a_change(mask_file, image):
    config = PipelineConfig(device="cpu", warmup_frames=0, mask=str(mask_file), detector=budget(200))
    pipeline = FramePipeline(config)
    first = pipeline(image, "rgb", 1).tracked.features
    assert inside_mask(first.keypoints, load_mask(mask_file)).all()
    pipeline.reconfigure(PipelineConfig(device="cpu", warmup_frames=0, detector=budget(200)))
    second = pipeline(image, "rgb", 2).tracked.features
    assert not inside_mask(second.keypoints, load_mask(mask_file)).all(), "mask removed at run time"


def test_parameters_refuse_a_mask_that_is_not_there_naming_it(tmp_path, mask_file):
    values = Settings.from_params().values
    with pytest.raises(ValueError, match="cannot read mask image .*absent.png"):
        validate({**values, "input.mask": str(tmp_path / "absent.png")})
    with pytest.raises(ValueError, match="cannot read mask image .*absent.png"):
        Settings.from_params({"cameras": "left,right", "left.input.mask": str(tmp_path / "absent.png")})
    with pytest.raises(ValueError, match="detector.selection must be one of top, grid"):
        validate({**values, "detector.selection": "even"})
    with pytest.raises(ValueError, match="detector.grid_cell must be in"):
        validate({**values, "detector.grid_cell": 4})
    Settings.from_params({"cameras": "left,right", "left.input.mask": str(mask_file), "detector.selection": "grid"})


def test_extract_applies_the_mask_and_names_an_image_of_another_size(tmp_path, mask_file, image):
    cv2.imwrite(str(tmp_path / "fits.png"), image)
    cv2.imwrite(str(tmp_path / "other.png"), image[:200])
    out = tmp_path / "out"
    code = extract_cli.main(
        [str(tmp_path / "fits.png"), str(tmp_path / "other.png"), "--out", str(out), "--device", "cpu",
         "--mask", str(mask_file), "--top-k", "200", "--score-threshold", "0"]
    )  # fmt: skip
    assert code == 1  # the image of another size failed, named
    keypoints = np.load(out / "fits.npz")["keypoints"]
    assert len(keypoints) == 200 and inside_mask(keypoints, load_mask(mask_file)).all()
    assert not (out / "other.npz").exists()


def test_bag_process_applies_each_cameras_own_mask(tmp_path, weights):  # noqa: F811
    """Two cameras; cam0's own mask (`cam0.input.mask`, as in the node) keeps its keypoints out of the left half."""
    sample = make_sample(tmp_path / "s", SampleConfig(frames=2, cameras=2, **SIZE))
    mask = np.full((SIZE["height"], SIZE["width"]), 255, np.uint8)
    mask[:, : SIZE["width"] // 2] = 0
    cv2.imwrite(str(tmp_path / "mask.png"), mask)
    params = {"cameras": "cam0,cam1", "cam0.input.mask": str(tmp_path / "mask.png"), "detector.max_keypoints": 100}
    process_bag(sample, tmp_path / "out", settings(weights, **params), progress=False)
    outputs = by_topic(tmp_path / "out")
    for camera, masked in (("/cam0", True), ("/cam1", False)):
        for _, raw in outputs[f"{camera}/features"]:
            keypoints = decode_features(deserialize_message(raw, PointCloud2)).keypoints
            assert len(keypoints) == 100
            assert inside_mask(keypoints, mask != 0).all() == masked


def test_the_device_path_selects_the_same_grid_and_mask(monkeypatch):
    """What a GPU runs (torch NMS, the grid chosen on the host), exercised on the CPU: the CPU path's keypoints."""
    import alike_ros.detection.dkd as dkd

    rng = np.random.default_rng(5)
    scores = torch.from_numpy(cv2.GaussianBlur(rng.random((120, 160)).astype(np.float32), (0, 0), 1.0))
    allowed = combed_mask((120, 160)) != 0
    cfg = budget(150, selection="grid", grid_cell=32)
    on_cpu = dkd.detect(scores, cfg, allowed)
    monkeypatch.setattr(dkd, "_cpu_map", lambda scores: False)
    on_device = dkd.detect(scores, cfg, allowed)
    assert len(on_cpu[0]) == 150
    assert torch.equal(on_cpu[0], on_device[0]) and torch.equal(on_cpu[1], on_device[1])
