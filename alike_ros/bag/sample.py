"""A small deterministic bag: a synthetic camera moving over a real photograph, with ground-truth homographies.

The photograph is `grace_hopper.jpg` from matplotlib's sample data (matplotlib is a dependency). Every frame
is the photograph warped by a homography H_k (a smooth pan, roll, zoom and slight tilt), so the motion
between two frames is known exactly: a pixel x of frame j lies at H_k H_j^-1 x in frame k.

Per camera namespace NS (`/camera`, or `/cam0`, `/cam1`... with several cameras) the bag holds
- `NS/image_raw` (sensor_msgs/Image, bgr8) or `NS/image_raw/compressed` (sensor_msgs/CompressedImage, JPEG);
- `NS/homography` (std_msgs/Float64MultiArray): H_k row-major (3 x 3), mapping pixels of the photograph to
  pixels of the frame, written with the same bag timestamp as the frame; header stamps equal bag timestamps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from matplotlib import cbook
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Float64MultiArray, Header, MultiArrayDimension

from .storage import write_bag

PHOTO = "grace_hopper.jpg"
START_NS = 1_700_000_000 * 10**9  # a fixed epoch, so two runs write identical bags
HOMOGRAPHY_TOPIC = "homography"


@dataclass
class SampleConfig:
    frames: int = 60
    width: int = 320
    height: int = 240
    rate: float = 10.0  # frames per second of bag time
    cameras: int = 1
    compressed: bool = False
    jpeg_quality: int = 95
    period: int = 60  # frames per cycle of the trajectory: the motion between frames does not depend on `frames`


def load_photo() -> np.ndarray:
    """The sample photograph as BGR uint8 (600 x 512)."""
    data = np.frombuffer(Path(cbook.get_sample_data(PHOTO, asfileobj=False)).read_bytes(), np.uint8)
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def camera_namespaces(cameras: int) -> list[str]:
    return ["/camera"] if cameras == 1 else [f"/cam{i}" for i in range(cameras)]


def homography(t: float, camera: int, photo_size: tuple[int, int], frame_size: tuple[int, int]) -> np.ndarray:
    """H mapping photo pixels to frame pixels at phase t of the (periodic) trajectory.

    The amplitudes keep every frame inside the photograph (no invented border content): zoom >= 1 and
    roll <= 8 degrees keep the view within 175 x 141 photo pixels of its centre.
    """
    (ph, pw), (fh, fw) = photo_size, frame_size
    phase = 2 * np.pi * t + camera * np.pi / 2
    cx = (pw - 1) / 2 + 55 * np.sin(phase)
    cy = (ph - 1) / 2 + 90 * np.sin(2 * phase)
    angle = np.deg2rad(8) * np.sin(phase + 1.0)
    zoom = 1.1 + 0.1 * np.sin(3 * phase)
    to_origin = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]])
    c, s = zoom * np.cos(angle), zoom * np.sin(angle)
    rotate_zoom = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    tilt = np.array([[1, 0, 0], [0, 1, 0], [1.5e-4 * np.sin(phase), 1.5e-4 * np.cos(phase), 1]])
    to_frame = np.array([[1, 0, (fw - 1) / 2], [0, 1, (fh - 1) / 2], [0, 0, 1]])
    H = to_frame @ tilt @ rotate_zoom @ to_origin
    return H / H[2, 2]


def homography_message(H: np.ndarray) -> Float64MultiArray:
    msg = Float64MultiArray()
    msg.layout.dim = [
        MultiArrayDimension(label="rows", size=3, stride=9),
        MultiArrayDimension(label="cols", size=3, stride=3),
    ]
    msg.data = [float(v) for v in H.ravel()]
    return msg


def image_message(header: Header, bgr: np.ndarray, compressed: bool, quality: int) -> Image | CompressedImage:
    if compressed:
        ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
        assert ok, "OpenCV failed to encode a JPEG"
        return CompressedImage(header=header, format="bgr8; jpeg compressed bgr8", data=jpeg.tobytes())
    h, w = bgr.shape[:2]
    return Image(header=header, height=h, width=w, encoding="bgr8", is_bigendian=0, step=w * 3, data=bgr.tobytes())


def make_sample(out: str | Path, config: SampleConfig, storage: str = "sqlite3", overwrite: bool = False) -> Path:
    """Write the sample bag to `out`; returns its path."""
    if config.frames < 2 or config.cameras < 1 or config.rate <= 0:
        raise ValueError("a sample needs >= 2 frames, >= 1 camera and a positive rate")
    photo = load_photo()
    namespaces = camera_namespaces(config.cameras)
    image_type = "sensor_msgs/msg/CompressedImage" if config.compressed else "sensor_msgs/msg/Image"
    image_suffix = "image_raw/compressed" if config.compressed else "image_raw"
    info = {
        "photo": f"matplotlib sample data: {PHOTO}",
        "frames": config.frames,
        "cameras": {
            ns: {"image": f"{ns}/{image_suffix}", "homography": f"{ns}/{HOMOGRAPHY_TOPIC}"} for ns in namespaces
        },
    }
    with write_bag(out, storage, overwrite, custom_data={"alike_ros.sample": info}) as bag:
        for ns in namespaces:
            bag.add_topic(f"{ns}/{image_suffix}", image_type)
            bag.add_topic(f"{ns}/{HOMOGRAPHY_TOPIC}", "std_msgs/msg/Float64MultiArray")
        for k in range(config.frames):
            stamp_ns = START_NS + round(k * 1e9 / config.rate)
            for cam, ns in enumerate(namespaces):
                H = homography(k / config.period, cam, photo.shape[:2], (config.height, config.width))
                frame = cv2.warpPerspective(photo, H, (config.width, config.height), flags=cv2.INTER_LINEAR)
                header = Header(frame_id=f"{ns.strip('/')}_optical_frame")
                header.stamp.sec, header.stamp.nanosec = divmod(stamp_ns, 10**9)
                bag.write(
                    f"{ns}/{image_suffix}",
                    stamp_ns,
                    image_message(header, frame, config.compressed, config.jpeg_quality),
                )
                bag.write(f"{ns}/{HOMOGRAPHY_TOPIC}", stamp_ns, homography_message(H))
    return Path(out)
