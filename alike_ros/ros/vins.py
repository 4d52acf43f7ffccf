"""`features_vins`: sensor_msgs/PointCloud in the layout VINS-style back ends read.

Points hold normalised image coordinates (x, y, 1) from `camera_info` (undistorted); channels follow the
chosen layout. Velocities are in normalised units per second, from each match's previous position, zero
for keypoints that start a track (as VINS' own feature tracker does). Ids travel as float32, as in VINS.
"""

from __future__ import annotations

import cv2
import numpy as np
from geometry_msgs.msg import Point32
from sensor_msgs.msg import CameraInfo, ChannelFloat32, PointCloud
from std_msgs.msg import Header

from ..matching.tracker import TrackedFrame

LAYOUTS: dict[str, tuple[str, ...]] = {
    # VINS-Mono feature_tracker: id = feature id * NUM_OF_CAM + camera index (one camera here)
    "vins_mono": ("id_of_point", "u_of_point", "v_of_point", "velocity_x_of_point", "velocity_y_of_point"),
    # VINS-Fusion estimator's feature callback: id, camera id, u, v, velocity x, velocity y
    "vins_fusion": (
        "id_of_point",
        "camera_id",
        "u_of_point",
        "v_of_point",
        "velocity_x_of_point",
        "velocity_y_of_point",
    ),
}


class CameraModel:
    """Pixel to normalised coordinates for the distortion models of sensor_msgs/CameraInfo."""

    def __init__(self, info: CameraInfo):
        self.k = np.asarray(info.k, dtype=np.float64).reshape(3, 3)
        if self.k[0, 0] <= 0 or self.k[1, 1] <= 0:
            raise ValueError("camera_info has no valid intrinsics (fx, fy must be > 0)")
        self.d = np.asarray(info.d, dtype=np.float64)
        self.model = info.distortion_model
        if self.model not in ("", "plumb_bob", "rational_polynomial", "equidistant"):
            raise ValueError(f"unsupported distortion model {self.model!r}")
        self.size = (info.height, info.width)

    def normalise(self, pixels: np.ndarray) -> np.ndarray:
        if len(pixels) == 0:
            return np.zeros((0, 2), np.float64)
        pts = pixels.reshape(-1, 1, 2).astype(np.float64)
        if self.model == "equidistant":
            return cv2.fisheye.undistortPoints(pts, self.k, self.d[:4]).reshape(-1, 2)
        return cv2.undistortPoints(pts, self.k, self.d if self.d.size else None).reshape(-1, 2)


def _normalised_and_velocity(frame: TrackedFrame, camera: CameraModel, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Each keypoint's normalised coordinates and their velocity against its match in the previous frame."""
    if camera.size != (0, 0) and camera.size != frame.features.image_size:
        raise ValueError(
            f"camera_info is for {camera.size[1]}x{camera.size[0]} images, the image is "
            f"{frame.features.image_size[1]}x{frame.features.image_size[0]}"
        )
    normalised = camera.normalise(frame.features.keypoints)
    velocity = np.zeros_like(normalised)
    if len(frame.matches) and frame.previous is not None and dt > 0:
        i0, i1 = frame.matches.indices.T
        velocity[i1] = (normalised[i1] - camera.normalise(frame.previous.keypoints[i0])) / dt
    return normalised, velocity


def _cloud(header: Header, layout: str, normalised: np.ndarray, columns: dict[str, np.ndarray]) -> PointCloud:
    msg = PointCloud(header=header)
    msg.points = [Point32(x=float(x), y=float(y), z=1.0) for x, y in normalised]
    msg.channels = [
        ChannelFloat32(name=name, values=columns[name].astype(np.float32).tolist()) for name in LAYOUTS[layout]
    ]
    return msg


def encode_vins(header: Header, frame: TrackedFrame, layout: str, camera: CameraModel, dt: float) -> PointCloud:
    """The PointCloud of one frame; `dt` is the seconds since the previous frame (<= 0: zero velocities)."""
    normalised, velocity = _normalised_and_velocity(frame, camera, dt)
    pixels = frame.features.keypoints
    columns = {
        "id_of_point": frame.track_ids.astype(np.float64),
        "camera_id": np.zeros(len(pixels)),
        "u_of_point": pixels[:, 0],
        "v_of_point": pixels[:, 1],
        "velocity_x_of_point": velocity[:, 0],
        "velocity_y_of_point": velocity[:, 1],
    }
    return _cloud(header, layout, normalised, columns)


def encode_vins_stereo(
    header: Header,
    left: TrackedFrame,
    right: TrackedFrame,
    pairs: np.ndarray,
    cameras: tuple[CameraModel, CameraModel],
    dts: tuple[float, float],
) -> PointCloud:
    """A stereo pair in the vins_fusion layout, as VINS-Fusion's stereo front end publishes it: every left keypoint
    (camera_id 0), then each right keypoint matched to one (`pairs`: M x 2 left, right rows; camera_id 1) under the
    left keypoint's id, so one id names one physical point in both images."""
    left_normalised, left_velocity = _normalised_and_velocity(left, cameras[0], dts[0])
    right_normalised, right_velocity = _normalised_and_velocity(right, cameras[1], dts[1])
    li, ri = pairs.T
    pixels = np.concatenate((left.features.keypoints, right.features.keypoints[ri]))
    velocity = np.concatenate((left_velocity, right_velocity[ri]))
    columns = {
        "id_of_point": np.concatenate((left.track_ids, left.track_ids[li])).astype(np.float64),
        "camera_id": np.concatenate((np.zeros(len(left.track_ids)), np.ones(len(li)))),
        "u_of_point": pixels[:, 0],
        "v_of_point": pixels[:, 1],
        "velocity_x_of_point": velocity[:, 0],
        "velocity_y_of_point": velocity[:, 1],
    }
    return _cloud(header, "vins_fusion", np.concatenate((left_normalised, right_normalised[ri])), columns)
