"""One behaviour on every device: each test runs on the CPU, and on CUDA where a CUDA device exists (kornia's
device-parametrised tests). The CPU is the reference: the other device's results are compared with it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_textured_image

from alike_ros.detection.dkd import DetectorConfig
from alike_ros.extractor import Extractor, network_input
from alike_ros.matching.matcher import Matcher, MatcherConfig
from alike_ros.pipeline import FramePipeline, PipelineConfig

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
DETECTOR = DetectorConfig.strongest(300)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=CUDA)])
def device(request) -> torch.device:
    return torch.device(request.param)


@pytest.fixture
def cpu_features(alike_t_weights):
    return Extractor("alike-t", alike_t_weights, "cpu", detector=DETECTOR)(make_textured_image())


def nearest(points: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance from each point to its nearest reference point, and that point's index."""
    distances = np.linalg.norm(points[:, None].astype(np.float64) - reference[None], axis=2)
    return distances.min(axis=1), distances.argmin(axis=1)


def test_network_input_is_the_same_on_the_device(device):
    image = np.random.default_rng(0).integers(0, 256, (37, 45, 3), dtype=np.uint8)
    on_device, size = network_input(image, "bgr", 0, device, 32, torch.channels_last)
    on_host, _ = network_input(image, "bgr", 0, torch.device("cpu"), 32, torch.channels_last)
    assert on_device.device.type == device.type and size == (37, 45)
    assert torch.equal(on_device.cpu(), on_host)


def test_extractor_on_the_device_finds_the_cpu_features(device, alike_t_weights, cpu_features):
    features = Extractor("alike-t", alike_t_weights, str(device), detector=DETECTOR)(make_textured_image())
    assert len(features) == len(cpu_features) and features.descriptors.shape[1] == 64
    distance, index = nearest(features.keypoints, cpu_features.keypoints)
    # cuDNN may use TF32 in convolutions: scores shift by ~1e-3, not keypoints by more than a hundredth of a pixel
    assert np.mean(distance < 0.01) >= 0.98
    same = distance < 0.01
    cosine = np.sum(features.descriptors[same] * cpu_features.descriptors[index[same]], axis=1)
    assert cosine.min() >= 0.999


def test_half_precision_keeps_the_features(device, alike_t_weights, cpu_features):
    if device.type != "cuda":
        pytest.skip("half precision runs on CUDA only (refused on the CPU, see test_extractor)")
    features = Extractor("alike-t", alike_t_weights, str(device), half=True, detector=DETECTOR)(make_textured_image())
    distance, index = nearest(features.keypoints, cpu_features.keypoints)
    assert np.mean(distance < 0.05) >= 0.9
    same = distance < 0.05
    assert np.median(np.sum(features.descriptors[same] * cpu_features.descriptors[index[same]], axis=1)) >= 0.999


def test_matcher_on_the_device_finds_the_cpu_matches(device):
    rng = np.random.default_rng(0)
    d0 = rng.normal(size=(500, 64)).astype(np.float32)
    d0 /= np.linalg.norm(d0, axis=1, keepdims=True)
    permutation = rng.permutation(500)
    d1 = d0[permutation] + rng.normal(scale=0.02, size=(500, 64)).astype(np.float32)
    d1 /= np.linalg.norm(d1, axis=1, keepdims=True)
    config = MatcherConfig(min_similarity=0.8, ratio=0.9)
    expected, got = Matcher(config, "cpu")(d0, d1), Matcher(config, device)(d0, d1)
    assert len(expected) > 400  # noisy copies: nearly every descriptor finds its own
    np.testing.assert_array_equal(got.indices, expected.indices)
    np.testing.assert_allclose(got.similarity, expected.similarity, atol=1e-5)
    assert np.array_equal(permutation[expected.indices[:, 1]], expected.indices[:, 0])


def test_pipeline_tracks_on_the_device(device, alike_t_weights):
    scene = make_textured_image(rectangles=False)
    frames = [np.ascontiguousarray(np.roll(scene, (2 * k, 3 * k), axis=(0, 1))[40:200, 40:280]) for k in range(2)]
    config = PipelineConfig(weights=str(alike_t_weights), device=str(device), warmup_frames=1, warmup_sizes="240x160")
    pipeline = FramePipeline(config)
    assert pipeline.extractor.device.type == device.type
    first, second = pipeline(frames[0], "rgb", 1), pipeline(frames[1], "rgb", 2)
    i0, i1 = second.tracked.matches.indices.T
    assert len(i0) > 50
    shift = second.tracked.features.keypoints[i1] - first.tracked.features.keypoints[i0]
    assert np.median(shift, axis=0) == pytest.approx([3.0, 2.0], abs=0.1)
