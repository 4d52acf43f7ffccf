"""A small deterministic bag: synthetic cameras moving over a real photograph, with ground-truth homographies.

The scene is `alike_ros.scene`'s: every frame is the photograph warped by a homography H_k, so the motion between
two frames is known exactly (a pixel x of frame j lies at H_k H_j^-1 x in frame k).

Per camera namespace NS (`/camera`; `/cam0`, `/cam1`... with several cameras; `/stereo/left` and `/stereo/right`
for a stereo rig) the bag holds
- `NS/image_raw` (sensor_msgs/Image, bgr8 or any other input encoding of the node, as a driver of that encoding
  stores the frame: `conversions.from_bgr8`) or `NS/image_raw/compressed` (sensor_msgs/CompressedImage, JPEG);
- `NS/homography` (std_msgs/Float64MultiArray): H_k row-major (3 x 3), mapping pixels of the photograph to
  pixels of the frame, written with the same bag timestamp as the frame; header stamps equal bag timestamps;
- for a stereo rig, `NS/camera_info` (rectified, with the baseline in the right camera's P) with each frame. The
  right camera's homography is the left one's moved by the rig's disparity, so the same topics give the ground
  truth of left-right matches: a left pixel x lies at H_right H_left^-1 x in the right frame of the same stamp.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Float64MultiArray, Header, MultiArrayDimension

from ..ros.conversions import array_to_image, from_bgr8
from ..scene import PHOTO, StereoScene, homography, load_photo
from .storage import write_bag

START_NS = 1_700_000_000 * 10**9  # a fixed epoch, so two runs write identical bags
HOMOGRAPHY_TOPIC = "homography"
STEREO_NAMESPACES = ("/stereo/left", "/stereo/right")


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
    stereo: bool = False  # a rectified stereo rig (STEREO_NAMESPACES) instead of `cameras`
    stereo_near: float = 12.0  # the rig's disparity at the left edge of the left frame, px
    stereo_far: float = 20.0  # and at its right edge
    encoding: str = "bgr8"  # of the Image messages (not with `compressed`)

    def stereo_scene(self) -> StereoScene:
        return StereoScene(self.width, self.height, self.stereo_near, self.stereo_far)


def camera_namespaces(config: SampleConfig) -> list[str]:
    if config.stereo:
        return list(STEREO_NAMESPACES)
    return ["/camera"] if config.cameras == 1 else [f"/cam{i}" for i in range(config.cameras)]


def homography_message(H: np.ndarray) -> Float64MultiArray:
    msg = Float64MultiArray()
    msg.layout.dim = [
        MultiArrayDimension(label="rows", size=3, stride=9),
        MultiArrayDimension(label="cols", size=3, stride=3),
    ]
    msg.data = [float(v) for v in H.ravel()]
    return msg


def image_message(header: Header, bgr: np.ndarray, config: SampleConfig) -> Image | CompressedImage:
    if config.compressed:
        ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality])
        assert ok, "OpenCV failed to encode a JPEG"
        return CompressedImage(header=header, format="bgr8; jpeg compressed bgr8", data=jpeg.tobytes())
    return array_to_image(from_bgr8(bgr, config.encoding), config.encoding, header)


def make_sample(out: str | Path, config: SampleConfig, storage: str = "sqlite3", overwrite: bool = False) -> Path:
    """Write the sample bag to `out`; returns its path."""
    if config.frames < 2 or config.cameras < 1 or config.rate <= 0:
        raise ValueError("a sample needs >= 2 frames, >= 1 camera and a positive rate")
    if config.stereo and not 0 <= config.stereo_near <= config.stereo_far < config.width / 2:
        raise ValueError("a stereo sample needs 0 <= near <= far disparity < half the width")
    if config.compressed and config.encoding != "bgr8":
        raise ValueError(f"a compressed sample is JPEG: encoding {config.encoding!r} applies to raw images only")
    photo = load_photo()
    namespaces = camera_namespaces(config)
    scene = config.stereo_scene()
    views = [scene.right_from_left if ns == STEREO_NAMESPACES[1] else np.eye(3) for ns in namespaces]
    image_type = "sensor_msgs/msg/CompressedImage" if config.compressed else "sensor_msgs/msg/Image"
    image_suffix = "image_raw/compressed" if config.compressed else "image_raw"
    info = {
        "photo": f"matplotlib sample data: {PHOTO}",
        "frames": config.frames,
        "encoding": "jpeg" if config.compressed else config.encoding,
        "cameras": {
            ns: {"image": f"{ns}/{image_suffix}", "homography": f"{ns}/{HOMOGRAPHY_TOPIC}"} for ns in namespaces
        },
    }
    if config.stereo:
        left, right = STEREO_NAMESPACES
        info["stereo"] = {"left": left, "right": right, "near": scene.near, "far": scene.far, "fx": scene.fx,
                          "baseline": scene.baseline}  # fmt: skip
    with write_bag(out, storage, overwrite, custom_data={"alike_ros.sample": info}) as bag:
        for ns in namespaces:
            bag.add_topic(f"{ns}/{image_suffix}", image_type)
            bag.add_topic(f"{ns}/{HOMOGRAPHY_TOPIC}", "std_msgs/msg/Float64MultiArray")
            if config.stereo:
                bag.add_topic(f"{ns}/camera_info", "sensor_msgs/msg/CameraInfo")
        camera_infos = scene.camera_infos() if config.stereo else ()
        for k in range(config.frames):
            stamp_ns = START_NS + round(k * 1e9 / config.rate)
            for cam, ns in enumerate(namespaces):
                trajectory = 0 if config.stereo else cam  # a rig moves as one
                size = (config.height, config.width)
                H = views[cam] @ homography(k / config.period, trajectory, photo.shape[:2], size)
                frame = cv2.warpPerspective(photo, H, (config.width, config.height), flags=cv2.INTER_LINEAR)
                header = Header(frame_id=f"{ns.strip('/')}_optical_frame")
                header.stamp.sec, header.stamp.nanosec = divmod(stamp_ns, 10**9)
                if camera_infos:  # before its image, so that a reader knows the geometry when the image comes
                    camera_infos[cam].header = header
                    bag.write(f"{ns}/camera_info", stamp_ns, camera_infos[cam])
                bag.write(
                    f"{ns}/{image_suffix}",
                    stamp_ns,
                    image_message(header, frame, config),
                )
                bag.write(f"{ns}/{HOMOGRAPHY_TOPIC}", stamp_ns, homography_message(H))
    return Path(out)
