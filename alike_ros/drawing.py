"""The `debug_image`: keypoints coloured by how long their track is, and a line from each match's previous
position to its current one."""

from __future__ import annotations

import cv2
import numpy as np

from .matching.tracker import TrackedFrame

LONG_TRACK = 10  # tracks this long or longer get the last colour of the map


def track_colours(lengths: np.ndarray) -> np.ndarray:
    """N x 3 BGR colours: new keypoints blue, long tracks red (OpenCV's turbo map)."""
    levels = (np.clip(lengths - 1, 0, LONG_TRACK - 1) * 255 // (LONG_TRACK - 1)).astype(np.uint8)
    return cv2.applyColorMap(levels.reshape(-1, 1), cv2.COLORMAP_TURBO).reshape(-1, 3)


def draw_tracks(bgr: np.ndarray, frame: TrackedFrame) -> np.ndarray:
    """Draw on `bgr` (H x W x 3 uint8, modified and returned)."""
    points = frame.features.keypoints
    colours = track_colours(frame.track_lengths)
    if len(frame.matches) and frame.previous is not None:
        i0, i1 = frame.matches.indices.T
        for p0, p1, colour in zip(frame.previous.keypoints[i0], points[i1], colours[i1], strict=True):
            cv2.line(bgr, _pixel(p0), _pixel(p1), tuple(int(c) for c in colour), 1, cv2.LINE_AA)
    for point, colour in zip(points, colours, strict=True):
        cv2.circle(bgr, _pixel(point), 2, tuple(int(c) for c in colour), -1, cv2.LINE_AA)
    return bgr


def _pixel(point: np.ndarray) -> tuple[int, int]:
    return int(round(float(point[0]))), int(round(float(point[1])))
