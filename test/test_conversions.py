"""Image and CompressedImage conversion: every encoding, padding, byte order, and every way a message can be bad."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy", reason="the conversions work on ROS messages")

from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from alike_ros.ros import conversions  # noqa: E402
from alike_ros.ros.conversions import (  # noqa: E402
    ENCODINGS,
    array_to_image,
    check_image,
    compressed_to_array,
    image_to_array,
    to_bgr8,
)

RNG = np.random.default_rng(3)


def sample(encoding: str, h: int = 5, w: int = 7) -> np.ndarray:
    enc = ENCODINGS[encoding]
    high = 65536 if enc.dtype == "u2" else 256
    shape = (h, w) if enc.channels == 1 else (h, w, enc.channels)
    return RNG.integers(0, high, size=shape).astype(enc.dtype)


def padded(msg: Image, pad: int) -> Image:
    """The same image with `pad` junk bytes after every row."""
    rows = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)
    junk = np.full((msg.height, pad), 0xAB, np.uint8)
    msg.data = np.hstack((rows, junk)).tobytes()
    msg.step += pad
    return msg


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_every_encoding_round_trips(encoding):
    pixels = sample(encoding)
    array, color = image_to_array(array_to_image(pixels, encoding), use_cv_bridge=False)
    expected = pixels[..., :3] if pixels.ndim == 3 and pixels.shape[2] == 4 else pixels
    np.testing.assert_array_equal(array, expected)
    assert array.dtype == expected.dtype
    assert color == ENCODINGS[encoding].color


@pytest.mark.parametrize("encoding", ["mono8", "mono16", "bgr8", "rgba8"])
def test_step_padding_is_skipped(encoding):
    pixels = sample(encoding)
    array, _ = image_to_array(padded(array_to_image(pixels, encoding), 5), use_cv_bridge=False)
    np.testing.assert_array_equal(array, pixels[..., :3] if pixels.ndim == 3 else pixels)


def test_big_endian_mono16():
    pixels = sample("mono16")
    msg = array_to_image(pixels, "mono16")
    msg.data = pixels.astype(">u2").tobytes()
    msg.is_bigendian = True
    array, _ = image_to_array(msg, use_cv_bridge=False)
    np.testing.assert_array_equal(array, pixels)


@pytest.mark.skipif(conversions.CvBridge is None, reason="cv_bridge is not importable (no ROS install here)")
@pytest.mark.parametrize("encoding", list(ENCODINGS))
@pytest.mark.parametrize("pad", [0, 3])
def test_numpy_path_equals_cv_bridge(encoding, pad):
    msg = padded(array_to_image(sample(encoding), encoding), pad)
    ours, _ = image_to_array(msg, use_cv_bridge=False)
    theirs, _ = image_to_array(msg, use_cv_bridge=True)
    assert ours.dtype == theirs.dtype
    np.testing.assert_array_equal(ours, theirs)


def test_colour_orders_reach_the_same_bgr():
    bgr = sample("bgr8")
    rgb_msg = array_to_image(np.ascontiguousarray(bgr[..., ::-1]), "rgb8")
    for msg in (array_to_image(bgr, "bgr8"), rgb_msg, array_to_image(bgr, "8UC3")):
        np.testing.assert_array_equal(to_bgr8(*image_to_array(msg)), bgr)


def bad(**fields) -> Image:
    msg = array_to_image(sample("mono8", 4, 6), "mono8")
    for name, value in fields.items():
        setattr(msg, name, value)
    return msg


@pytest.mark.parametrize(
    ("msg", "reason"),
    [
        (bad(encoding="yuv422"), "unsupported encoding"),
        (bad(encoding=""), "unsupported encoding"),
        (bad(width=0, step=0, data=b""), "empty"),
        (bad(height=0, data=b""), "empty"),
        (bad(step=3), "step 3 is shorter"),
        (bad(data=b"\0" * 5), "needs exactly"),
        (bad(step=7), "needs exactly"),
        (bad(encoding="bgr8"), "step 6 is shorter"),
        (bad(width=100_000, height=100_000, step=100_000), "needs exactly"),  # a header far larger than its data
    ],
)
def test_bad_messages_raise_a_clear_value_error(msg, reason):
    with pytest.raises(ValueError, match=reason):
        image_to_array(msg, use_cv_bridge=False)


def test_a_huge_consistent_image_is_left_to_the_extractor_and_its_max_side():
    """9000 x 6000 bgr8 (54 Mpixel, over the extractor's limit at native size) passes the message checks: with
    input.max_side the extractor downscales it (tested in test_extractor); without, it names max_side."""

    class Sized(bytes):  # a data field of the right length, without allocating 162 MB
        def __len__(self) -> int:
            return 9000 * 3 * 6000

    msg = Image(width=9000, height=6000, encoding="bgr8", step=9000 * 3)
    assert (
        check_image(
            SimpleNamespace(**{f: getattr(msg, f) for f in ("width", "height", "encoding", "step")}, data=Sized())
        ).channels
        == 3
    )


@pytest.mark.parametrize(("ext", "flags"), [(".png", cv2.IMREAD_UNCHANGED), (".jpg", cv2.IMREAD_COLOR)])
def test_compressed_colour(ext, flags):
    bgr = np.ascontiguousarray(np.repeat(sample("bgr8", 16, 24), 2, axis=0))
    data = cv2.imencode(ext, bgr)[1].tobytes()
    array, color = compressed_to_array(CompressedImage(format=ext[1:], data=data))
    np.testing.assert_array_equal(array, cv2.imdecode(np.frombuffer(data, np.uint8), flags))
    assert color == "bgr"


def test_compressed_16_bit_png_stays_16_bit():
    pixels = sample("mono16")
    array, _ = compressed_to_array(CompressedImage(format="png", data=cv2.imencode(".png", pixels)[1].tobytes()))
    np.testing.assert_array_equal(array, pixels)


@pytest.mark.parametrize("data", [b"", b"not an image", cv2.imencode(".png", sample("mono8"))[1].tobytes()[:40]])
def test_corrupt_compressed_raises(data):
    with pytest.raises(ValueError):
        compressed_to_array(CompressedImage(format="png", data=data))
