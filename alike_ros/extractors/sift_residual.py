"""`sift-residual`: OpenCV SIFT keypoints, each described by SIFT's descriptor refined by a small MLP and
concatenated with a CNN descriptor sampled there (`model.residual`). D = 128 with the bundled weights.

Of the detector settings, `top_k`, `max_keypoints`, `selection` and `grid_cell` apply (SIFT's keypoints, strongest
first or spread over the grid); the score is
SIFT's response (the DoG contrast of [0, 1] intensities, so in [0, 1)). `score_threshold`, `window_size`,
`border` and `temperature` belong to ALIKE's DKD and do not apply.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from ..detection.selection import allowed_pixels, check_mask, choose
from ..extractor import finished, network_input, timed, to_rgb_float
from ..features import Color, Features
from ..model.residual import MODEL_NAME, ResidualDescriptorNet, load_residual
from ..model.weights import WeightsError, bundled_weights_path
from . import Options, Registration, register, torch_float32


def sift_features(
    gray: np.ndarray, limit: int, selection: str = "top", cell: int = 64, allowed: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`limit` SIFT keypoints of a uint8 image, strongest first, chosen by `selection.choose` among those in the
    `allowed` pixels (H x W bool; None: all): (N x 2 pixels, responses, N x 128 unit descriptors). OpenCV's pixel
    convention is ours (centre of the top-left pixel at (0, 0))."""
    # SIFT's own cut (nfeatures) keeps the strongest; a mask or a grid chooses among all its keypoints
    own_cut = selection == "top" and allowed is None
    keypoints, descriptors = cv2.SIFT_create(nfeatures=limit if own_cut else 0).detectAndCompute(gray, None)
    if descriptors is None:
        return np.zeros((0, 2), np.float32), np.zeros(0, np.float32), np.zeros((0, 128), np.float32)
    responses = np.array([k.response for k in keypoints], np.float32)
    points = np.array([k.pt for k in keypoints], np.float32)
    order = choose(points, responses, limit, gray.shape, selection, cell, allowed)  # nfeatures keeps ties at its cut
    descriptors = descriptors[order]
    descriptors /= np.maximum(np.linalg.norm(descriptors, axis=1, keepdims=True), 1e-12)
    return points[order], responses[order], descriptors


def sift_at(gray: np.ndarray, points: np.ndarray, size: float) -> np.ndarray:
    """Upright SIFT descriptors (N x 128, unit length) of a uint8 image at given points, for a keypoint diameter
    of `size` px: how another detector's keypoints (which carry no scale or orientation) get SIFT descriptors."""
    keypoints = [cv2.KeyPoint(float(x), float(y), size, 0.0) for x, y in points]
    kept, descriptors = cv2.SIFT_create().compute(gray, keypoints)
    if descriptors is None or len(kept) != len(points):  # OpenCV drops points it cannot describe; ours never are
        raise ValueError(f"SIFT described {0 if descriptors is None else len(kept)} of {len(points)} points")
    return descriptors / np.maximum(np.linalg.norm(descriptors, axis=1, keepdims=True), 1e-12)


def to_gray_uint8(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor((rgb * 255.0 + 0.5).astype(np.uint8), cv2.COLOR_RGB2GRAY)


class SiftResidualExtractor:
    def __init__(self, net: ResidualDescriptorNet, options: Options):
        self.device, self.detector, self.max_side = torch_float32(MODEL_NAME, options)
        self.net = net.to(self.device).eval()
        self.descriptor_dim = net.cfg.dim

    @torch.inference_mode()
    def __call__(
        self, image: np.ndarray, color: Color = "rgb", max_side: int | None = None, mask: np.ndarray | None = None
    ) -> Features:
        check_mask(mask, image.shape[:2])
        timings: dict[str, float] = {}
        with timed(timings, self.device, "preprocessing"):
            rgb = to_rgb_float(image, color, self.max_side if max_side is None else max_side)
            tensor, _ = network_input(rgb, "rgb", 0, self.device, 8)  # the map's cells must tile the input exactly
        with timed(timings, self.device, "detection"):
            d = self.detector
            allowed = allowed_pixels(mask, rgb.shape[:2])
            points, responses, sift = sift_features(to_gray_uint8(rgb), d.limit, d.selection, d.grid_cell, allowed)
        with timed(timings, self.device, "network"):
            dense = self.net.dense(tensor)[0]
        with timed(timings, self.device, "description"):
            descriptors = self.net.describe(
                dense, torch.from_numpy(points).to(self.device), torch.from_numpy(sift).to(self.device)
            )
            descriptors = descriptors.cpu().numpy()
        return finished(points, responses, descriptors, image.shape[:2], rgb.shape[:2], timings, mask)


def build(options: Options) -> SiftResidualExtractor:
    path = options.weights or bundled_weights_path(MODEL_NAME)
    if not options.weights and not path.is_file():
        raise WeightsError(
            f"no bundled weights for {MODEL_NAME} yet: pass a weights file trained with `alike_ros train`"
        )
    return SiftResidualExtractor(load_residual(path), options)


register(Registration(MODEL_NAME, "SIFT keypoints, SIFT descriptor + learned residual (CNN at 1/8)", 128, build))
