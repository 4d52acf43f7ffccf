"""The synthetic scene of the sample bag and the stand-in camera: a photograph seen along a known trajectory, and a
rectified stereo rig looking at it with known disparity.

The photograph is `grace_hopper.jpg` from matplotlib's sample data (matplotlib is a dependency). A frame is the
photograph warped by a homography H (a smooth pan, roll, zoom and slight tilt along a periodic trajectory), so the
motion between two frames is known exactly: a pixel x of frame j lies at H_k H_j^-1 x in frame k.

The stereo rig sees the photograph as a slanted plane: the right frame is the left frame moved along its rows by the
disparity d(x) = near + (far - near) x / (width - 1) of the left pixel, so the right camera's homography is
`right_from_left @ H` and the ground-truth disparity of every left pixel is known (constant when near == far).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from matplotlib import cbook
from sensor_msgs.msg import CameraInfo

PHOTO = "grace_hopper.jpg"


def load_photo() -> np.ndarray:
    """The sample photograph as BGR uint8 (600 x 512)."""
    data = np.frombuffer(Path(cbook.get_sample_data(PHOTO, asfileobj=False)).read_bytes(), np.uint8)
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


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


@dataclass(frozen=True)
class StereoScene:
    """A rectified rig over the photograph: disparity `near` px at the left edge of the left frame, `far` px at its
    right edge; fx = the frame width, so that depth = fx * baseline / disparity."""

    width: int
    height: int
    near: float
    far: float
    baseline: float = 0.1  # m

    def disparity(self, x: np.ndarray | float) -> np.ndarray:
        """The ground-truth disparity of left pixels at column x."""
        return self.near + (self.far - self.near) * np.asarray(x, np.float64) / (self.width - 1)

    @property
    def right_from_left(self) -> np.ndarray:
        """3 x 3: a left pixel (x, y) to its right pixel (x - d(x), y)."""
        slope = (self.far - self.near) / (self.width - 1)
        return np.array([[1.0 - slope, 0.0, -self.near], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])

    @property
    def fx(self) -> float:
        return float(self.width)

    def camera_infos(self) -> tuple[CameraInfo, CameraInfo]:
        """Rectified camera_info of the left and the right camera (R = I, the same K in P, Tx = -fx * baseline)."""
        cx, cy = (self.width - 1) / 2, (self.height - 1) / 2
        infos = []
        for tx in (0.0, -self.fx * self.baseline):
            info = CameraInfo(width=self.width, height=self.height, distortion_model="plumb_bob", d=[0.0] * 5)
            info.k = [self.fx, 0.0, cx, 0.0, self.fx, cy, 0.0, 0.0, 1.0]
            info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
            info.p = [self.fx, 0.0, cx, tx, 0.0, self.fx, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
            infos.append(info)
        return infos[0], infos[1]
