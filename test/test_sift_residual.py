"""sift-residual: the network, the extractor behind the common contract, its training task, and the registry
that makes it a model like ALIKE's."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_textured_image, write_textured_photos

from alike_ros import extractors
from alike_ros.detection.dkd import DetectorConfig
from alike_ros.extractors.sift_residual import sift_features
from alike_ros.model.residual import MODEL_NAME, ResidualConfig, ResidualDescriptorNet, load_residual
from alike_ros.model.weights import WeightsError
from alike_ros.pipeline import FramePipeline, PipelineConfig
from alike_ros.training.cli import main as train_main

SMALL = ResidualConfig(channels=(4, 4, 8, 8), head=8, cnn_dim=8, refine_hidden=16, refine_dim=8)


def save_weights(path: Path, cfg: ResidualConfig = SMALL, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    net = ResidualDescriptorNet(cfg)
    config = {**cfg.__dict__, "channels": list(cfg.channels)}
    torch.save({"state_dict": net.state_dict(), "model": MODEL_NAME, "step": 0, "note": "", "config": config}, path)
    return path


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    return save_weights(tmp_path / "sift-residual.pth")


def test_sampling_at_a_cell_centre_reads_that_cell():
    net = ResidualDescriptorNet(ResidualConfig(refine_dim=0, cnn_dim=2))
    dense = torch.zeros(2, 3, 4)
    dense[0] = torch.arange(12.0).view(3, 4)
    dense[1] = 1.0
    # the 8x8 block of cell (row 1, column 2) spans x in [16, 24), y in [8, 16): its centre is pixel (19.5, 11.5)
    described = net.describe(dense, torch.tensor([[19.5, 11.5]]), None)
    assert torch.allclose(described, F.normalize(torch.tensor([[6.0, 1.0]]), dim=1))


def test_descriptors_are_unit_length_and_concatenate_both_parts():
    net = ResidualDescriptorNet(SMALL).eval()
    dense = net.dense(torch.rand(1, 3, 64, 96))
    assert dense.shape == (1, SMALL.cnn_dim, 8, 12)
    kp = torch.tensor([[3.0, 4.0], [50.2, 33.7], [95.0, 63.0]])
    sift = F.normalize(torch.rand(3, 128), dim=1)
    out = net.describe(dense[0], kp, sift)
    assert out.shape == (3, SMALL.dim) and torch.allclose(out.norm(dim=1), torch.ones(3))
    # the SIFT part moves with the SIFT descriptor, the CNN part does not
    other = net.describe(dense[0], kp, F.normalize(torch.rand(3, 128), dim=1))
    # before normalisation the CNN part is the same: the two CNN parts are parallel
    cos = F.cosine_similarity(out[:, : SMALL.cnn_dim], other[:, : SMALL.cnn_dim], dim=1)
    assert torch.allclose(cos, torch.ones(3), atol=1e-5)
    assert not torch.allclose(out[:, SMALL.cnn_dim :], other[:, SMALL.cnn_dim :])
    with pytest.raises(ValueError, match="SIFT"):
        net.describe(dense[0], kp, None)


def test_sift_features_are_the_strongest_first_and_unit_length():
    gray = make_textured_image()
    points, responses, descriptors = sift_features(gray, 50)
    assert 0 < len(points) <= 50 and points.dtype == np.float32
    assert np.all(np.diff(responses) <= 0) and responses.min() > 0 and responses.max() < 1
    assert np.allclose(np.linalg.norm(descriptors, axis=1), 1, atol=1e-5)
    everything = sift_features(gray, 5000)
    assert np.array_equal(everything[0][: len(points)], points)  # a smaller budget keeps the strongest


def test_the_extractor_keeps_the_contract(weights: Path):
    image = make_textured_image()
    extractor = extractors.build(MODEL_NAME, extractors.Options(str(weights), "cpu"))
    features = extractor(image)
    h, w = image.shape
    assert len(features) > 20 and features.descriptors.shape == (len(features), SMALL.dim)
    assert features.keypoints.dtype == np.float32 and features.descriptors.dtype == np.float32
    assert np.all((features.keypoints >= 0) & (features.keypoints <= [w - 1, h - 1]))
    assert np.all(np.diff(features.scores) <= 0)
    assert np.allclose(np.linalg.norm(features.descriptors, axis=1), 1, atol=1e-5)
    assert set(features.timings) == {"preprocessing", "network", "detection", "description", "total"}
    again = extractor(image)
    assert np.array_equal(features.keypoints, again.keypoints) and np.array_equal(
        features.descriptors, again.descriptors
    )
    # colour order is honoured: a BGR image given as such describes like the RGB one
    rgb = np.dstack((image, np.roll(image, 3, axis=1), image[::-1]))
    assert np.array_equal(
        extractor(rgb).descriptors, extractor(np.ascontiguousarray(rgb[..., ::-1]), "bgr").descriptors
    )


def test_the_extractor_follows_the_keypoint_budget_and_max_side(weights: Path):
    image = make_textured_image()
    extractor = extractors.build(MODEL_NAME, extractors.Options(str(weights), "cpu", detector=DetectorConfig(top_k=30)))
    assert len(extractor(image)) == 30
    extractor.detector = DetectorConfig(max_keypoints=10)  # as FramePipeline.reconfigure swaps it
    assert len(extractor(image)) == 10
    big = cv2.resize(image, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    extractor.max_side = 320
    found = extractor(big)
    assert found.image_size == big.shape and found.keypoints.max(0)[0] > 320  # in the pixels of the image given


def test_bad_inputs_and_options_are_refused_with_reasons(weights: Path, tmp_path: Path):
    extractor = extractors.build(MODEL_NAME, extractors.Options(str(weights), "cpu"))
    for bad, reason in ((np.zeros((0, 5), np.uint8), "empty"), (np.full((8, 8), np.nan, np.float32), "NaN")):
        with pytest.raises(ValueError, match=reason):
            extractor(bad)
    with pytest.raises(ValueError, match="runtime torch"):
        extractors.build(MODEL_NAME, extractors.Options(str(weights), "cpu", runtime="onnxruntime"))
    alike = tmp_path / "alike.pth"
    torch.save({"state_dict": {}, "model": "alike-t", "step": 0}, alike)
    with pytest.raises(WeightsError, match="not a sift-residual weights file"):
        load_residual(alike)
    mismatched = save_weights(tmp_path / "other.pth", ResidualConfig(channels=(4, 4, 8, 8), head=8, cnn_dim=8))
    state = torch.load(mismatched, weights_only=True)
    state["config"]["cnn_dim"] = 16
    torch.save(state, mismatched)
    with pytest.raises(WeightsError, match="does not fit"):
        load_residual(mismatched)


def test_it_is_a_model_of_the_registry_and_runs_through_the_frame_pipeline(weights: Path):
    assert (
        MODEL_NAME in extractors.names()
        and MODEL_NAME in PipelineConfig.__dataclass_fields__["model"].metadata["spec"].choices
    )
    pipeline = FramePipeline(PipelineConfig(model=MODEL_NAME, weights=str(weights), device="cpu", warmup_frames=1))
    image = make_textured_image()
    first = pipeline(image, "rgb", stamp_ns=1)
    second = pipeline(np.roll(image, 2, axis=1), "rgb", stamp_ns=2)
    assert len(second.tracked.matches.indices) > 0.5 * len(first.tracked.features)
    assert second.previous_stamp_ns == 1


def test_training_smoke_export_validate_and_use(tmp_path: Path):
    photos = write_textured_photos(tmp_path / "photos")
    out = tmp_path / "run"
    config = tmp_path / "train.yaml"
    config.write_text(
        f"model: {MODEL_NAME}\nout_dir: {out}\nsteps: 2\nbatch_size: 1\naccumulate: 1\ntop_k: 64\nval_top_k: 64\n"
        f"threads: 1\nlog_every: 1\nval_every: 2\nwarmup_steps: 1\nchannels_last: false\n"
        f"data:\n  folder: {photos}\n  size: 64\n  cache_side: 128\n  val_images: 1\n  val_pairs: 1\n"
        "residual:\n  channels: [4, 4, 8, 8]\n  head: 8\n  cnn_dim: 8\n  refine_hidden: 16\n  refine_dim: 8\n"
    )
    assert train_main(["--config", str(config)]) == 0
    header = (out / "val.csv").read_text().splitlines()[0].split(",")
    assert {"correct_matches", "sift_correct_matches"} <= set(header)
    exported = tmp_path / "exported.pth"
    assert train_main(["--export", str(out / "last.pt"), "--out", str(exported)]) == 0
    net = load_residual(exported)
    assert net.cfg == SMALL
    assert train_main(["--config", str(config), "--validate", str(exported)]) == 0
    extractor = extractors.build(MODEL_NAME, extractors.Options(str(exported), "cpu"))
    assert extractor(make_textured_image()).descriptors.shape[1] == SMALL.dim


def test_training_goes_on_through_batches_without_keypoints(tmp_path: Path):
    """Flat photos give SIFT nothing to describe: such a batch has no loss to follow, and the run goes on."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        cv2.imwrite(str(photos / f"{i}.png"), np.full((96, 128, 3), 90 + 10 * i, np.uint8))
    config = tmp_path / "train.yaml"
    config.write_text(
        f"model: {MODEL_NAME}\nout_dir: {tmp_path / 'run'}\nsteps: 2\nbatch_size: 1\naccumulate: 1\nthreads: 1\n"
        f"val_every: 2\nwarmup_steps: 1\nchannels_last: false\n"
        f"data:\n  folder: {photos}\n  size: 64\n  cache_side: 128\n  val_images: 1\n  val_pairs: 1\n"
        "residual:\n  channels: [4, 4, 8, 8]\n  head: 8\n  cnn_dim: 8\n  refine_hidden: 16\n  refine_dim: 8\n"
    )
    assert train_main(["--config", str(config)]) == 0
    assert (tmp_path / "run" / "last.pt").is_file()
