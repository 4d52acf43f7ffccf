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
    from_bgr8,
    image_to_array,
    to_bgr8,
    to_grey8,
)

RNG = np.random.default_rng(3)

# cv_bridge's documented mapping (cv_bridge.cpp, getConversionCodes: to bgr8 / bgr16) of the encodings the network
# cannot take as stored; nv21 and the newer names uyvy and yuyv cv_bridge does not know: OpenCV's conversion of
# the same bytes.
CONVERTED = {
    "bayer_rggb8": cv2.COLOR_BayerBG2BGR,
    "bayer_bggr8": cv2.COLOR_BayerRG2BGR,
    "bayer_gbrg8": cv2.COLOR_BayerGR2BGR,
    "bayer_grbg8": cv2.COLOR_BayerGB2BGR,
    "bayer_rggb16": cv2.COLOR_BayerBG2BGR,
    "bayer_bggr16": cv2.COLOR_BayerRG2BGR,
    "bayer_gbrg16": cv2.COLOR_BayerGR2BGR,
    "bayer_grbg16": cv2.COLOR_BayerGB2BGR,
    "yuv422": cv2.COLOR_YUV2BGR_UYVY,
    "uyvy": cv2.COLOR_YUV2BGR_UYVY,
    "yuv422_yuy2": cv2.COLOR_YUV2BGR_YUY2,
    "yuyv": cv2.COLOR_YUV2BGR_YUY2,
    "nv21": cv2.COLOR_YUV2BGR_NV21,
}
STORED = [e for e in ENCODINGS if e not in CONVERTED]  # the extractor takes these pixels as they are


def sample(encoding: str, h: int = 6, w: int = 8) -> np.ndarray:
    """Random stored pixels of an h x w image (1.5 h rows for nv21)."""
    enc = ENCODINGS[encoding]
    shape = (int(h * enc.rows), w) + (() if enc.channels == 1 else (enc.channels,))
    if enc.dtype == "f4":
        return RNG.random(shape, dtype=np.float32)
    return RNG.integers(0, np.iinfo(enc.dtype).max + 1, size=shape).astype(enc.dtype)


def colourful(h: int = 48, w: int = 64) -> np.ndarray:
    """A smooth BGR image whose three channels differ everywhere (each a gradient of its own direction), so that
    a debayering that takes one colour for another is far off."""
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    channels = (40 + 170 * xx / w, 30 + 190 * yy / h, 220 - 100 * (xx + yy) / (w + h))
    return np.rint(np.dstack(channels)).astype(np.uint8)


def padded(msg: Image, pad: int) -> Image:
    """The same image with `pad` junk bytes after every row."""
    rows = np.frombuffer(bytes(msg.data), np.uint8).reshape(-1, msg.step)
    junk = np.full((rows.shape[0], pad), 0xAB, np.uint8)
    msg.data = np.hstack((rows, junk)).tobytes()
    msg.step += pad
    return msg


def big_endian(msg: Image) -> Image:
    """The same image with every multi-byte value stored big-endian."""
    itemsize = np.dtype(ENCODINGS[msg.encoding].dtype).itemsize
    msg.data = np.frombuffer(bytes(msg.data), np.uint8).reshape(-1, itemsize)[:, ::-1].tobytes()
    msg.is_bigendian = True
    return msg


@pytest.mark.parametrize("encoding", STORED)
def test_stored_encodings_round_trip(encoding):
    pixels = sample(encoding)
    array, color = image_to_array(array_to_image(pixels, encoding), use_cv_bridge=False)
    expected = pixels[..., :3] if pixels.ndim == 3 and pixels.shape[2] == 4 else pixels
    np.testing.assert_array_equal(array, expected)
    assert array.dtype == expected.dtype
    assert color == ENCODINGS[encoding].color


def test_the_table_converts_exactly_the_documented_encodings():
    assert {e for e, enc in ENCODINGS.items() if enc.decode is not None} == set(CONVERTED)


@pytest.mark.parametrize("encoding", list(CONVERTED))
def test_converted_encodings_follow_cv_bridge_mapping(encoding):
    """The stored pixels through the documented OpenCV conversion: BGR of the frame's own size and depth."""
    stored = sample(encoding)
    array, color = image_to_array(array_to_image(stored, encoding), use_cv_bridge=False)
    expected = cv2.cvtColor(stored, CONVERTED[encoding])
    assert array.shape == (6, 8, 3) and array.dtype == stored.dtype and color == "bgr"
    np.testing.assert_array_equal(array, expected)


@pytest.mark.parametrize("encoding", list(CONVERTED))
def test_a_known_colour_image_comes_back(encoding):
    """A mosaic or YUV image built from a known colour image (as the sensor records it) converts back to that
    image: the Bayer patterns are not mistaken for one another (a wrong pattern is off by over 100 levels), nor UYVY
    for YUYV. YUV shares chroma between pixels, which costs a few levels on this image's gradients."""
    bgr = colourful()
    array, color = image_to_array(array_to_image(from_bgr8(bgr, encoding), encoding), use_cv_bridge=False)
    back = to_bgr8(array, color).astype(int)
    inner = (slice(2, -2), slice(2, -2))  # debayering has no neighbours beyond the border
    assert np.abs(back[inner] - bgr[inner]).max() <= 6
    assert np.abs(to_grey8(array, color)[inner].astype(int) - cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)[inner]).max() <= 2


@pytest.mark.parametrize("encoding", ["mono8", "mono16", "bgr8", "rgba8", "rgb16", "32FC1", "bayer_grbg16", "yuv422",
                                      "nv21"])  # fmt: skip
def test_step_padding_is_skipped(encoding):
    pixels = sample(encoding)
    expected, _ = image_to_array(array_to_image(pixels, encoding), use_cv_bridge=False)
    array, _ = image_to_array(padded(array_to_image(pixels, encoding), 5), use_cv_bridge=False)
    np.testing.assert_array_equal(array, expected)


@pytest.mark.parametrize("encoding", ["mono16", "bgr16", "rgba16", "bayer_rggb16", "bayer_gbrg16", "32FC1"])
def test_big_endian_data_is_honoured(encoding):
    pixels = sample(encoding)
    expected, _ = image_to_array(array_to_image(pixels, encoding), use_cv_bridge=False)
    array, _ = image_to_array(big_endian(array_to_image(pixels, encoding)), use_cv_bridge=False)
    np.testing.assert_array_equal(array, expected)
    assert array.dtype.isnative


def test_32fc1_is_intensity_from_0_to_1_clipped():
    values = np.array([[-0.5, 0.0, 0.25, 1.0, 1.5, 1e9]], np.float32)
    array, _ = image_to_array(array_to_image(values, "32FC1"), use_cv_bridge=False)
    np.testing.assert_array_equal(array, [[0.0, 0.0, 0.25, 1.0, 1.0, 1.0]])
    np.testing.assert_array_equal(to_bgr8(array, "rgb")[0, :, 0], [0, 0, 64, 255, 255, 255])
    for bad_value in (np.nan, np.inf):
        with pytest.raises(ValueError, match="NaN or infinite"):
            image_to_array(array_to_image(np.full((2, 2), bad_value, np.float32), "32FC1"), use_cv_bridge=False)


@pytest.mark.skipif(conversions.CvBridge is None, reason="cv_bridge is not importable (no ROS install here)")
@pytest.mark.parametrize("encoding", [e for e, enc in ENCODINGS.items() if enc.cv_bridge])
@pytest.mark.parametrize("pad", [0, 3])
def test_numpy_path_equals_cv_bridge(encoding, pad):
    msg = padded(array_to_image(sample(encoding), encoding), pad)
    ours, _ = image_to_array(msg, use_cv_bridge=False)
    theirs, _ = image_to_array(msg, use_cv_bridge=True)
    assert ours.dtype == theirs.dtype
    np.testing.assert_array_equal(ours, theirs)
    if encoding in CONVERTED:  # and cv_bridge's own conversion to BGR of the same depth
        depth = "bgr16" if ENCODINGS[encoding].dtype == "u2" else "bgr8"
        np.testing.assert_array_equal(ours, conversions.CvBridge().imgmsg_to_cv2(msg, desired_encoding=depth))


def test_colour_orders_reach_the_same_bgr():
    bgr = colourful(5, 7)
    for encoding in ("bgr8", "rgb8", "8UC3", "bgra8", "rgba8", "bgr16", "rgb16", "bgra16", "rgba16"):
        msg = array_to_image(from_bgr8(bgr, encoding), encoding)
        np.testing.assert_array_equal(to_bgr8(*image_to_array(msg, use_cv_bridge=False)), bgr, err_msg=encoding)


def bad(**fields) -> Image:
    msg = array_to_image(sample("mono8", 4, 6), "mono8")
    for name, value in fields.items():
        setattr(msg, name, value)
    return msg


@pytest.mark.parametrize(
    ("msg", "reason"),
    [
        (bad(encoding="nv24"), "unsupported encoding"),
        (bad(encoding="bayer_rggb32"), "unsupported encoding"),
        (bad(encoding=""), "unsupported encoding"),
        (bad(width=0, step=0, data=b""), "empty"),
        (bad(height=0, data=b""), "empty"),
        (bad(step=3), "step 3 is shorter"),
        (bad(data=b"\0" * 5), "needs exactly"),
        (bad(step=7), "needs exactly"),
        (bad(encoding="bgr8"), "step 6 is shorter"),
        (bad(encoding="bgr16", step=18, data=b"\0" * 72), "step 18 is shorter"),
        (bad(encoding="32FC1"), "step 6 is shorter"),
        (bad(encoding="yuv422", width=3), "yuv422 needs the width a multiple of 2"),
        (bad(encoding="yuyv", width=5, step=10, data=b"\0" * 40), "width a multiple of 2"),
        (bad(encoding="nv21", height=3, data=b"\0" * 18), "nv21 needs the width a multiple of 2 and height a multiple"),
        (bad(encoding="nv21"), r"step 6 x 6 rows \(height 4 and chroma\) needs exactly 36"),  # no chroma plane
        (bad(encoding="bayer_bggr16", step=12, data=b"\0" * 47), "needs exactly 48"),
        (bad(width=100_000, height=100_000, step=100_000), "needs exactly"),  # a header far larger than its data
    ],
)
def test_bad_messages_raise_a_clear_value_error(msg, reason):
    with pytest.raises(ValueError, match=reason):
        image_to_array(msg, use_cv_bridge=False)


def test_writing_an_encoding_checks_the_layout():
    with pytest.raises(ValueError, match="width a multiple of 2"):
        from_bgr8(colourful(4, 5), "yuv422")
    with pytest.raises(ValueError, match="unsupported encoding"):
        from_bgr8(colourful(4, 4), "nv24")
    with pytest.raises(ValueError, match="no whole nv21 image"):
        array_to_image(np.zeros((5, 4), np.uint8), "nv21")
    with pytest.raises(ValueError, match="does not fit bayer_rggb16"):
        array_to_image(np.zeros((4, 4), np.uint8), "bayer_rggb16")


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
