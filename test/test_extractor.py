"""The extractor's input handling, device logic and output contract."""

from __future__ import annotations

import tracemalloc

import cv2
import numpy as np
import pytest
import torch

from alike_ros.detection.dkd import DetectorConfig
from alike_ros.devices import resolve_device
from alike_ros.extractor import MAX_PIXELS, Extractor, network_input, read_rgb, to_rgb_float
from alike_ros.model.weights import WeightsError, load_model
from alike_ros.pipeline import PipelineConfig


@pytest.fixture
def extractor(alike_t_weights) -> Extractor:
    return Extractor("alike-t", alike_t_weights, "cpu", detector=DetectorConfig.strongest(300))


def test_output_contract(extractor, textured_image):
    f = extractor(textured_image)
    assert f.keypoints.dtype == np.float32 and f.keypoints.shape == (len(f), 2)
    assert f.descriptors.dtype == np.float32 and f.descriptors.shape == (len(f), 64)
    np.testing.assert_allclose(np.linalg.norm(f.descriptors, axis=1), 1.0, atol=1e-5)
    assert np.all(np.diff(f.scores) <= 0) and np.all((f.scores >= 0) & (f.scores <= 1))
    assert 0 < len(f) <= 300
    assert set(f.timings) == {"preprocessing", "network", "detection", "description", "total"}
    assert f.image_size == textured_image.shape


@pytest.mark.parametrize("fast", [True, False])
def test_a_batch_gives_what_one_by_one_gives(alike_t_weights, textured_image, fast):
    extractor = Extractor("alike-t", alike_t_weights, "cpu", detector=DetectorConfig.strongest(300), fast=fast)
    images = [(textured_image, "rgb"), (np.ascontiguousarray(textured_image[::-1, ::-1]), "rgb")]
    for max_side in (None, 96):
        batched = extractor.batch(images, max_side)
        for (image, color), got in zip(images, batched, strict=True):
            alone = extractor(image, color, max_side)
            np.testing.assert_allclose(got.keypoints, alone.keypoints, atol=1e-4)
            np.testing.assert_allclose(got.scores, alone.scores, atol=1e-5)
            np.testing.assert_allclose(got.descriptors, alone.descriptors, atol=1e-5)
            assert got.image_size == alone.image_size and set(got.timings) == set(alone.timings)
        assert not np.array_equal(batched[0].keypoints, batched[1].keypoints)  # each image its own
    with pytest.raises(ValueError, match="one size"):
        extractor.batch([(textured_image, "rgb"), (textured_image[:, :-40], "rgb")])
    assert extractor.batch([]) == []


def test_grey_colour_and_depth_variants_agree(extractor, textured_image):
    grey = extractor(textured_image)
    rgb = np.repeat(textured_image[..., None], 3, axis=2)
    for variant, color in [
        (rgb, "rgb"),
        (rgb, "bgr"),
        (textured_image.astype(np.uint16) * 257, "rgb"),
        (textured_image.astype(np.float32) / 255, "rgb"),
    ]:
        f = extractor(variant, color=color)
        np.testing.assert_allclose(f.keypoints, grey.keypoints, atol=1e-4)


def test_bgr_is_reversed_rgb(extractor, textured_image):
    rng = np.random.default_rng(0)
    colour = np.stack([textured_image, rng.permutation(textured_image), textured_image // 2], axis=2)
    a = extractor(colour, color="rgb")
    b = extractor(np.ascontiguousarray(colour[..., ::-1]), color="bgr")
    np.testing.assert_array_equal(a.keypoints, b.keypoints)


def test_any_size_is_padded_and_cropped(extractor, textured_image):
    odd = textured_image[:201, :267]
    f = extractor(odd)
    assert len(f) > 0
    assert f.keypoints[:, 0].max() < 267 and f.keypoints[:, 1].max() < 201
    tiny = extractor(textured_image[:4, :4])
    assert len(tiny) == 0  # smaller than the refinement window: no keypoints, no error


def test_resize_maps_keypoints_back_to_original_pixels(alike_t_weights, textured_image):
    cfg = DetectorConfig.strongest(200)
    native = Extractor("alike-t", alike_t_weights, "cpu", detector=cfg)(textured_image)
    # 2x2 blocks: area downscaling gives back exactly the native image
    big = textured_image.repeat(2, axis=0).repeat(2, axis=1)
    resized = Extractor("alike-t", alike_t_weights, "cpu", detector=cfg, max_side=320)(big)
    assert resized.image_size == big.shape
    # a keypoint at p in the native image is at 2p + 0.5 in the 2x image (pixel-centre convention)
    np.testing.assert_allclose(resized.keypoints, native.keypoints * 2 + 0.5, atol=1e-4)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((0, 10), np.uint8), "empty"),
        (np.zeros((10, 10, 4), np.uint8), "H x W"),
        (np.zeros((2, 10, 10, 3), np.uint8), "H x W"),
        (np.zeros((10, 10), np.int32), "dtype"),
        (np.full((10, 10), np.nan, np.float32), "NaN"),
        (np.full((10, 10), 2.0, np.float32), r"\[0, 1\]"),
        (np.zeros((9000, 9000), np.uint8), "exceeds"),
    ],
)
def test_bad_images_raise_clear_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        to_rgb_float(bad)


def test_not_an_array_and_bad_colour():
    with pytest.raises(TypeError):
        to_rgb_float([[1, 2], [3, 4]])
    with pytest.raises(ValueError, match="color"):
        to_rgb_float(np.zeros((4, 4, 3), np.uint8), color="hsv")


def test_device_resolution(monkeypatch):
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="unsupported|invalid"):
        resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(ValueError, match="not available"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="does not exist"):
        resolve_device("cuda:2")


def test_half_needs_cuda(alike_t_weights):
    with pytest.raises(ValueError, match="CUDA"):
        Extractor("alike-t", alike_t_weights, "cpu", half=True)


@pytest.mark.parametrize("options", [{"half": True}, {"half": True, "runtime": "onnxruntime"}])
def test_the_extractor_and_the_pipeline_settings_refuse_with_one_reason(alike_t_weights, options):
    """One copy of the device rules: the node refuses the parameter with the reason the extractor would give."""
    with pytest.raises(ValueError) as built:
        Extractor("alike-t", alike_t_weights, "cpu", **options)
    with pytest.raises(ValueError) as validated:
        PipelineConfig(device="cpu", **options).validate()
    assert str(built.value) == str(validated.value)


def test_weights_errors_name_the_problem(tmp_path, alike_t_weights):
    with pytest.raises(WeightsError, match="does not exist"):
        load_model("alike-t", tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read"):
        load_model("alike-t", tmp_path / "junk.pth")
    with pytest.raises(WeightsError, match="does not fit alike-n"):
        load_model("alike-n", alike_t_weights)
    with pytest.raises(ValueError, match="unknown model"):
        load_model("alike-x", alike_t_weights)


def test_missing_bundled_weights_name_the_model(monkeypatch, tmp_path):
    import alike_ros.model.weights as weights

    monkeypatch.setattr(weights, "bundled_weights_path", lambda model: tmp_path / f"{model}.pth")
    with pytest.raises(WeightsError, match="alike-s"):
        weights.load_model("alike-s")


def test_integer_translation_equivariance(extractor, textured_image):
    """Shifting by the network's coarsest stride (32 px) moves interior keypoints by the shift.

    Only approximately: the coarse branches are upsampled with align_corners=True, whose sampling grid
    depends on the image size, so near-tied peaks may swap. DKD alone is exactly equivariant
    (test_detection); here most keypoints must land on the exact same spot and nearly all within 1 px."""
    big = np.pad(textured_image, 48, mode="reflect")
    a = extractor(big)
    b = extractor(np.ascontiguousarray(big[32:, 32:]))
    moved = a.keypoints - 32
    h, w = b.image_size
    inside = (moved[:, 0] > 40) & (moved[:, 1] > 40) & (moved[:, 0] < w - 40) & (moved[:, 1] < h - 40)
    dist = (
        torch.cdist(torch.from_numpy(moved[inside]).double(), torch.from_numpy(b.keypoints).double()).min(dim=1).values
    )
    assert inside.sum() > 20
    assert dist.median().item() < 0.05
    assert (dist < 0.5).float().mean() > 0.8


def test_read_rgb_converts_downscales_and_names_unreadable_files(tmp_path, textured_image):
    bgr = np.dstack([textured_image, textured_image // 2, textured_image // 4])
    cv2.imwrite(str(tmp_path / "a.png"), bgr)
    np.testing.assert_array_equal(read_rgb(tmp_path / "a.png"), bgr[:, :, ::-1])
    assert read_rgb(tmp_path / "a.png", max_side=160).shape == (120, 160, 3)
    (tmp_path / "b.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="b.png"):
        read_rgb(tmp_path / "b.png")


def test_size_limit_applies_to_the_image_the_network_sees(alike_t_weights, textured_image):
    big = np.tile(textured_image, (38, 19))  # 9120 x 6080: 55 Mpixel, more than MAX_PIXELS
    assert big.shape[0] * big.shape[1] > MAX_PIXELS
    with pytest.raises(ValueError, match="exceeds .*set max_side"):
        to_rgb_float(big)
    with pytest.raises(ValueError, match="still exceeds .*smaller max_side"):
        to_rgb_float(big, max_side=9000)
    tracemalloc.start()
    try:
        small = to_rgb_float(big, max_side=320)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert small.shape == (320, 213, 3) and small.dtype == np.float32
    # downscaled before the float conversion: full size float32 RGB would be 12x the 8-bit grey input
    assert peak < big.nbytes
    cfg = DetectorConfig.strongest(100)
    f = Extractor("alike-t", alike_t_weights, "cpu", detector=cfg, max_side=320)(big)
    assert f.image_size == big.shape and 0 < len(f) <= 100
    assert f.keypoints[:, 0].max() < big.shape[1] and f.keypoints[:, 1].max() < big.shape[0]


def test_downscaling_happens_in_the_input_dtype(textured_image):
    rgb = np.dstack([textured_image, textured_image // 2, textured_image // 3])
    expected = cv2.resize(rgb, (160, 120), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    np.testing.assert_array_equal(to_rgb_float(rgb, max_side=160), expected)
    np.testing.assert_array_equal(to_rgb_float(rgb[..., ::-1], "bgr", max_side=160), expected)
    np.testing.assert_array_equal(to_rgb_float(rgb, max_side=320), rgb.astype(np.float32) / 255)  # no resize
    grey = to_rgb_float(textured_image.astype(np.float16) / 255, max_side=160)  # cv2 has no float16 resize
    assert grey.shape == (120, 160, 3) and grey.dtype == np.float32


@pytest.mark.parametrize("content", [b"not a checkpoint", b"PK\x03\x04truncated zip", b""])
def test_damaged_weights_get_our_own_one_line_error(tmp_path, content):
    path = tmp_path / "damaged.pth"
    path.write_bytes(content)
    with pytest.raises(WeightsError) as info:
        load_model("alike-t", path)
    message = str(info.value)
    assert str(path) in message and "not a PyTorch weights file, or damaged" in message
    assert "weights_only" not in message and "\n" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__  # torch's advice never shows


def test_weights_holding_python_objects_are_refused_unloaded(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "object.pth"
    torch.save({"state_dict": {}, "payload": _Payload(marker)}, path)
    with pytest.raises(WeightsError, match="not a PyTorch weights file, or damaged"):
        load_model("alike-t", path)
    assert not marker.exists()


class _Payload:
    """Unpickling it creates a file: stands for arbitrary code in a pickle."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (self.marker.touch, ())


@pytest.mark.parametrize(
    ("dtype", "channels", "color"),
    [
        (np.uint8, 3, "rgb"),
        (np.uint8, 3, "bgr"),
        (np.uint8, 0, "rgb"),
        (np.uint16, 3, "bgr"),
        (np.float16, 3, "rgb"),
        (np.float64, 3, "bgr"),
        (np.float32, 1, "rgb"),
    ],
)
@pytest.mark.parametrize("max_side", [0, 20])
def test_network_input_is_the_rgb_float_image_padded(dtype, channels, color, max_side):
    rng = np.random.default_rng(0)
    shape = (37, 45, channels) if channels else (37, 45)
    if np.issubdtype(dtype, np.integer):
        image = rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
        image.flat[:2] = (0, np.iinfo(dtype).max)  # both ends of the range
    else:
        image = rng.random(shape).astype(dtype)
    tensor, (h, w) = network_input(image, color, max_side, torch.device("cpu"), 32, torch.channels_last)
    expected = to_rgb_float(image, color, max_side)
    assert tensor.dtype == torch.float32 and tensor.is_contiguous(memory_format=torch.channels_last)
    assert (h, w) == expected.shape[:2] and tuple(tensor.shape[2:]) == (-(-h // 32) * 32, -(-w // 32) * 32)
    hwc = tensor[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(hwc[:h, :w], expected)  # bit for bit
    assert not hwc[h:].any() and not hwc[:, w:].any()


def test_freed_frame_buffers_are_kept_for_reuse():
    """The allocator keeps the per-frame maps (mallopt on glibc, the C library of every supported ROS platform)."""
    import platform

    from alike_ros import memory

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    memory.keep_freed_memory.cache_clear()
    assert memory.keep_freed_memory() is True
    assert memory.keep_freed_memory.cache_info().currsize == 1  # once per process
