"""sensor_msgs Image / CompressedImage to numpy and back, with cv_bridge when it is importable.

Every message is checked before any pixel is touched (encoding, size, `step`, data length), so a bad message
raises a ValueError that says what is wrong instead of crashing or allocating gigabytes. The numpy path
gives exactly the arrays cv_bridge's `passthrough` conversion gives; the tests hold both to that.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    dtype: str  # numpy dtype of one channel
    channels: int
    color: Color  # channel order of colour encodings (ignored for one channel)


# The input encodings of CONVENTIONS.md (16UC1 is the same bytes as mono16). 8UC3 is OpenCV's BGR.
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
}


def check_image(msg: Image) -> Encoding:
    """The message's Encoding, or ValueError naming what does not fit (nothing is allocated here). The size limit
    is the extractor's, on the image after `input.max_side`: a huge image the node is told to downscale is fine."""
    enc = ENCODINGS.get(msg.encoding)
    if enc is None:
        raise ValueError(f"unsupported encoding {msg.encoding!r}; supported: {', '.join(ENCODINGS)}")
    if msg.width == 0 or msg.height == 0:
        raise ValueError(f"image is empty ({msg.width}x{msg.height})")
    row_bytes = msg.width * enc.channels * np.dtype(enc.dtype).itemsize
    if msg.step < row_bytes:
        raise ValueError(f"step {msg.step} is shorter than a row of {msg.width} {msg.encoding} pixels ({row_bytes} B)")
    if len(msg.data) != msg.step * msg.height:
        raise ValueError(
            f"data holds {len(msg.data)} bytes, step {msg.step} x height {msg.height} needs exactly "
            f"{msg.step * msg.height}"
        )
    return enc


def _numpy_passthrough(msg: Image, enc: Encoding) -> np.ndarray:
    """The pixels as an H x W (x C) array in native byte order, rows copied out of any `step` padding."""
    dtype = np.dtype(enc.dtype).newbyteorder(">" if msg.is_bigendian else "<")
    buffer = np.frombuffer(msg.data, dtype=np.uint8).reshape(msg.height, msg.step)
    row_bytes = msg.width * enc.channels * dtype.itemsize
    pixels = buffer[:, :row_bytes].copy().view(dtype).reshape(msg.height, msg.width, enc.channels)
    pixels = pixels.astype(dtype.newbyteorder("="), copy=False)
    return pixels[..., 0] if enc.channels == 1 else pixels


def _cv_bridge_passthrough(msg: Image) -> np.ndarray:
    return np.asarray(CvBridge().imgmsg_to_cv2(msg, desired_encoding="passthrough"))


def image_to_array(msg: Image, use_cv_bridge: bool | None = None) -> tuple[np.ndarray, Color]:
    """Pixels for the extractor: H x W (uint8 or uint16, which the extractor scales to [0, 1]) or H x W x 3
    uint8 with alpha dropped, and the channel order. `use_cv_bridge=None` uses it when importable."""
    enc = check_image(msg)
    if use_cv_bridge is None:
        use_cv_bridge = CvBridge is not None
    if use_cv_bridge and CvBridge is None:
        raise RuntimeError("cv_bridge is not importable here")
    pixels = _cv_bridge_passthrough(msg) if use_cv_bridge else _numpy_passthrough(msg, enc)
    if pixels.ndim == 3 and pixels.shape[2] == 4:
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
    """An H x W x 3 uint8 BGR copy for drawing (16-bit scaled down by 257, so 65535 maps to 255)."""
    if pixels.dtype == np.uint16:
        pixels = (pixels // 257).astype(np.uint8)
    if pixels.ndim == 2:
        return cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(pixels[..., ::-1]) if color == "rgb" else pixels.copy()


def to_grey8(pixels: np.ndarray, color: Color) -> np.ndarray:
    """An H x W uint8 grey image (as `to_bgr8` scales 16-bit data)."""
    bgr = to_bgr8(pixels, color) if pixels.ndim == 3 or pixels.dtype != np.uint8 else pixels
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if bgr.ndim == 3 else bgr


def array_to_image(pixels: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """An Image message of `pixels` (H x W or H x W x C, dtype and channels matching `encoding`)."""
    enc = ENCODINGS.get(encoding)
    if enc is None:
        raise ValueError(f"unsupported encoding {encoding!r}")
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    if channels != enc.channels or pixels.dtype != np.dtype(enc.dtype):
        raise ValueError(f"{pixels.dtype} array with {channels} channels does not fit {encoding}")
    pixels = np.ascontiguousarray(pixels, dtype=np.dtype(enc.dtype).newbyteorder("<"))
    msg = Image(header=header or Header(), height=pixels.shape[0], width=pixels.shape[1], encoding=encoding)
    msg.is_bigendian = False
    msg.step = pixels.shape[1] * enc.channels * pixels.dtype.itemsize
    msg.data = pixels.tobytes()
    return msg
