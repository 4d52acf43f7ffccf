"""sensor_msgs Image / CompressedImage to numpy and back, with cv_bridge when it is importable.

Every message is checked before any pixel is touched (encoding, size, `step`, data length), so a bad message
raises a ValueError that says what is wrong instead of crashing or allocating gigabytes. The stored pixels are
read exactly as cv_bridge's `passthrough` conversion reads them (the tests hold both to that); encodings the
network cannot take as stored (Bayer mosaics, YUV) then go through OpenCV's own conversion to BGR, the one
cv_bridge applies for `bgr8` / `bgr16` (cv_bridge.cpp, getConversionCodes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from fractions import Fraction
from functools import partial
from typing import Literal

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

try:  # cv_bridge comes with a ROS install, not with pip
    from cv_bridge import CvBridge
except ImportError:  # pragma: no cover - depends on the machine
    CvBridge = None

Color = Literal["rgb", "bgr"]


@dataclass(frozen=True)
class Encoding:
    dtype: str  # numpy dtype of one stored channel
    channels: int  # stored channels per pixel (packed YUV 4:2:2: a chroma and a luma byte)
    color: Color  # channel order of the array the extractor gets (ignored for one channel)
    decode: int | None = None  # cv2.cvtColor code from the stored pixels to that array; None: the pixels as stored
    encode: Callable[[np.ndarray], np.ndarray] | None = None  # a BGR image of this depth to the stored pixels
    block: tuple[int, int] = (1, 1)  # (rows, columns) that height and width must be multiples of: shared chroma
    rows: Fraction = Fraction(1)  # stored rows per image row (NV21 keeps a half-height chroma plane below the luma)
    cv_bridge: bool = True  # cv_bridge knows the name (it knows no nv21, nor the newer uyvy and yuyv)


def _mosaic(bgr: np.ndarray, pattern: str) -> np.ndarray:
    """What a Bayer sensor records: each pixel the one colour its filter passes; `pattern` is the top-left 2 x 2
    block, row by row, as ROS names it."""
    mosaic = np.empty(bgr.shape[:2], bgr.dtype)
    for (dy, dx), colour in zip(((0, 0), (0, 1), (1, 0), (1, 1)), pattern, strict=True):
        mosaic[dy::2, dx::2] = bgr[dy::2, dx::2, "bgr".index(colour)]
    return mosaic


def _yuv420(bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Y (H x W), U and V (H/2 x W/2) by OpenCV's BT.601 encoder, the inverse of its YUV decoders below."""
    h, w = bgr.shape[:2]
    planes = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)
    chroma = planes[h:].reshape(2, h // 2, w // 2)
    return planes[:h], chroma[0], chroma[1]


def _yuv422(bgr: np.ndarray, luma_first: bool) -> np.ndarray:
    """Packed 4:2:2, H x W x 2: (chroma, luma) per pixel for UYVY, (luma, chroma) for YUYV; U at even columns, V at
    odd. Encoded as 4:2:0 of the image with every row doubled, which gives each row its own chroma: OpenCV before
    4.10 (the python3-opencv of Ubuntu 24.04) has no 4:2:2 encoder."""
    y, u, v = _yuv420(np.repeat(bgr, 2, axis=0))
    packed = np.empty((*bgr.shape[:2], 2), np.uint8)
    luma, chroma = (0, 1) if luma_first else (1, 0)
    packed[..., luma] = y[::2]
    packed[:, 0::2, chroma], packed[:, 1::2, chroma] = u, v
    return packed


def _nv21(bgr: np.ndarray) -> np.ndarray:
    """(H + H/2) x W: the Y plane, then rows of interleaved V, U (one pair per 2 x 2 pixels)."""
    y, u, v = _yuv420(bgr)
    return np.vstack((y, np.stack((v, u), axis=-1).reshape(u.shape[0], -1)))


# ROS names a Bayer pattern by the first two pixels of its first two rows, OpenCV by the second and third pixels of
# its second row: ROS rggb is OpenCV's BG. These are cv_bridge's codes.
_BAYER_TO_BGR = {
    "rggb": cv2.COLOR_BayerBG2BGR,
    "bggr": cv2.COLOR_BayerRG2BGR,
    "gbrg": cv2.COLOR_BayerGR2BGR,
    "grbg": cv2.COLOR_BayerGB2BGR,
}
_UYVY = Encoding("u1", 2, "bgr", cv2.COLOR_YUV2BGR_UYVY, partial(_yuv422, luma_first=False), block=(1, 2))
_YUYV = Encoding("u1", 2, "bgr", cv2.COLOR_YUV2BGR_YUY2, partial(_yuv422, luma_first=True), block=(1, 2))

# The input encodings (README, Topics). 16UC1 is the same bytes as mono16; 8UC3 is OpenCV's BGR.
ENCODINGS: dict[str, Encoding] = {
    "mono8": Encoding("u1", 1, "rgb"),
    "8UC1": Encoding("u1", 1, "rgb"),
    "mono16": Encoding("u2", 1, "rgb"),
    "16UC1": Encoding("u2", 1, "rgb"),
    "bgr8": Encoding("u1", 3, "bgr"),
    "rgb8": Encoding("u1", 3, "rgb"),
    "8UC3": Encoding("u1", 3, "bgr"),
    "bgra8": Encoding("u1", 4, "bgr"),
    "rgba8": Encoding("u1", 4, "rgb"),
    "bgr16": Encoding("u2", 3, "bgr"),
    "rgb16": Encoding("u2", 3, "rgb"),
    "bgra16": Encoding("u2", 4, "bgr"),
    "rgba16": Encoding("u2", 4, "rgb"),
    "32FC1": Encoding("f4", 1, "rgb"),  # intensity: 0 black, 1 white (`_intensities`)
    **{
        f"bayer_{pattern}{bits}": Encoding(dtype, 1, "bgr", code, partial(_mosaic, pattern=pattern))
        for bits, dtype in (("8", "u1"), ("16", "u2"))
        for pattern, code in _BAYER_TO_BGR.items()
    },
    "yuv422": _UYVY,
    "uyvy": replace(_UYVY, cv_bridge=False),
    "yuv422_yuy2": _YUYV,
    "yuyv": replace(_YUYV, cv_bridge=False),
    "nv21": Encoding("u1", 1, "bgr", cv2.COLOR_YUV2BGR_NV21, _nv21, (2, 2), Fraction(3, 2), cv_bridge=False),
}


def _lookup(encoding: str) -> Encoding:
    enc = ENCODINGS.get(encoding)
    if enc is None:
        raise ValueError(f"unsupported encoding {encoding!r}; supported: {', '.join(ENCODINGS)}")
    return enc


def _check_block(encoding: str, enc: Encoding, width: int, height: int) -> None:
    rows, columns = enc.block
    if height % rows or width % columns:
        needs = " and ".join(f"{side} a multiple of {n}" for side, n in (("width", columns), ("height", rows)) if n > 1)
        raise ValueError(
            f"{encoding} needs the {needs} (one chroma sample per {rows}x{columns} pixels); got {width}x{height}"
        )


def check_image(msg: Image) -> Encoding:
    """The message's Encoding, or ValueError naming what does not fit (nothing is allocated here). The size limit
    is the extractor's, on the image after `input.max_side`: a huge image the node is told to downscale is fine."""
    enc = _lookup(msg.encoding)
    if msg.width == 0 or msg.height == 0:
        raise ValueError(f"image is empty ({msg.width}x{msg.height})")
    _check_block(msg.encoding, enc, msg.width, msg.height)
    row_bytes = msg.width * enc.channels * np.dtype(enc.dtype).itemsize
    if msg.step < row_bytes:
        raise ValueError(f"step {msg.step} is shorter than a row of {msg.width} {msg.encoding} pixels ({row_bytes} B)")
    rows = int(msg.height * enc.rows)
    if len(msg.data) != msg.step * rows:
        what = f"height {msg.height}" if rows == msg.height else f"{rows} rows (height {msg.height} and chroma)"
        raise ValueError(f"data holds {len(msg.data)} bytes, step {msg.step} x {what} needs exactly {msg.step * rows}")
    return enc


def _numpy_passthrough(msg: Image, enc: Encoding) -> np.ndarray:
    """The stored pixels as a rows x W (x C) array in native byte order, rows copied out of any `step` padding."""
    dtype = np.dtype(enc.dtype).newbyteorder(">" if msg.is_bigendian else "<")
    rows = int(msg.height * enc.rows)
    buffer = np.frombuffer(msg.data, dtype=np.uint8).reshape(rows, msg.step)
    row_bytes = msg.width * enc.channels * dtype.itemsize
    pixels = buffer[:, :row_bytes].copy().view(dtype).reshape(rows, msg.width, enc.channels)
    pixels = pixels.astype(dtype.newbyteorder("="), copy=False)
    return pixels[..., 0] if enc.channels == 1 else pixels


def _cv_bridge_passthrough(msg: Image) -> np.ndarray:
    return np.asarray(CvBridge().imgmsg_to_cv2(msg, desired_encoding="passthrough"))


def _intensities(pixels: np.ndarray) -> np.ndarray:
    """Float pixels as the extractor takes them: 0 is black and 1 white (OpenCV's convention for float images),
    values outside clipped to that range. NaN or infinity is no intensity: a clear error."""
    if not np.isfinite(pixels).all():
        raise ValueError("float image holds NaN or infinite values")
    return np.clip(pixels, 0.0, 1.0)


def image_to_array(msg: Image, use_cv_bridge: bool | None = None) -> tuple[np.ndarray, Color]:
    """Pixels for the extractor: H x W (uint8 or uint16, which the extractor scales to [0, 1], or float32 in
    [0, 1]) or H x W x 3 (uint8 or uint16) with alpha dropped, and the channel order; Bayer and YUV images are
    converted to BGR of their own size and depth. `use_cv_bridge=None` uses it when importable; it reads the pixels
    of the encodings it knows (`Encoding.cv_bridge`), numpy those of the others."""
    enc = check_image(msg)
    if use_cv_bridge is None:
        use_cv_bridge = CvBridge is not None
    if use_cv_bridge and CvBridge is None:
        raise RuntimeError("cv_bridge is not importable here")
    pixels = _cv_bridge_passthrough(msg) if use_cv_bridge and enc.cv_bridge else _numpy_passthrough(msg, enc)
    if enc.decode is not None:
        pixels = cv2.cvtColor(pixels, enc.decode)
    elif pixels.dtype.kind == "f":
        pixels = _intensities(pixels)
    elif pixels.ndim == 3 and pixels.shape[2] == 4:
        pixels = pixels[..., :3]
    return pixels, enc.color


def compressed_to_array(msg: CompressedImage) -> tuple[np.ndarray, Color]:
    """Decode a CompressedImage (any format cv2.imdecode reads; 16-bit PNG stays 16-bit)."""
    if len(msg.data) == 0:
        raise ValueError("compressed image holds no data")
    pixels = cv2.imdecode(np.frombuffer(bytes(msg.data), dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise ValueError(f"cannot decode compressed image (format {msg.format!r}, {len(msg.data)} bytes)")
    if pixels.ndim == 3 and pixels.shape[2] == 4:
        pixels = pixels[..., :3]
    if pixels.ndim == 3 and pixels.shape[2] != 3:
        raise ValueError(f"compressed image decodes to {pixels.shape[2]} channels")
    return pixels, "bgr"


def to_bgr8(pixels: np.ndarray, color: Color) -> np.ndarray:
    """An H x W x 3 uint8 BGR copy for drawing (16-bit scaled down by 257, so 65535 maps to 255; float by 255)."""
    if pixels.dtype == np.uint16:
        pixels = (pixels // 257).astype(np.uint8)
    elif pixels.dtype.kind == "f":
        pixels = np.rint(np.clip(pixels, 0.0, 1.0) * 255).astype(np.uint8)
    if pixels.ndim == 2:
        return cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(pixels[..., ::-1]) if color == "rgb" else pixels.copy()


def to_grey8(pixels: np.ndarray, color: Color) -> np.ndarray:
    """An H x W uint8 grey image (as `to_bgr8` scales 16-bit and float data)."""
    bgr = to_bgr8(pixels, color) if pixels.ndim == 3 or pixels.dtype != np.uint8 else pixels
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if bgr.ndim == 3 else bgr


def from_bgr8(bgr: np.ndarray, encoding: str) -> np.ndarray:
    """An H x W x 3 uint8 BGR image as a driver of `encoding` stores it, for `array_to_image` (the sample bag and the
    tests write every encoding this way): 16-bit values are 257 times the 8-bit ones (255 becomes 65535), float
    ones 1/255 of them, grey is OpenCV's BGR2GRAY, alpha is opaque."""
    enc = _lookup(encoding)
    _check_block(encoding, enc, bgr.shape[1], bgr.shape[0])
    pixels = {"u1": bgr, "u2": bgr.astype(np.uint16) * 257, "f4": bgr.astype(np.float32) / 255}[enc.dtype]
    if enc.encode is not None:
        return enc.encode(pixels)
    if enc.channels == 1:
        return cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY)
    ordered = pixels if enc.color == "bgr" else pixels[..., ::-1]
    if enc.channels == 4:
        ordered = np.dstack((ordered, np.full(bgr.shape[:2], np.iinfo(pixels.dtype).max, pixels.dtype)))
    return np.ascontiguousarray(ordered)


def array_to_image(pixels: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """An Image message of `pixels` in the stored layout of `encoding` (rows x W or rows x W x C, dtype and channels
    matching it; rows is the height, or 1.5 times it for nv21)."""
    enc = _lookup(encoding)
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    if channels != enc.channels or pixels.dtype != np.dtype(enc.dtype):
        raise ValueError(f"{pixels.dtype} array with {channels} channels does not fit {encoding}")
    height = Fraction(pixels.shape[0]) / enc.rows
    if height.denominator != 1:
        raise ValueError(f"{pixels.shape[0]} rows are no whole {encoding} image")
    pixels = np.ascontiguousarray(pixels, dtype=np.dtype(enc.dtype).newbyteorder("<"))
    msg = Image(header=header or Header(), height=int(height), width=pixels.shape[1], encoding=encoding)
    msg.is_bigendian = False
    msg.step = pixels.shape[1] * enc.channels * pixels.dtype.itemsize
    msg.data = pixels.tobytes()
    check_image(msg)  # e.g. an odd width of yuv422
    return msg
