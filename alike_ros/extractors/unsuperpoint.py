"""`unsuperpoint`: one scored, sub-pixel keypoint per 8 x 8 cell (model.unsuperpoint), described there.

There is no NMS: the detector's `score_threshold`, `top_k`, `max_keypoints`, `border`, `selection` and `grid_cell`
select among the cells' keypoints; `window_size` and `temperature` do not apply. D = 128 with the bundled weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..detection.selection import allowed_pixels, check_mask, choose
from ..extractor import finished, network_input, timed
from ..features import Color, Features
from ..geometry import inside
from ..model.unsuperpoint import (
    CELL,
    MODEL_NAME,
    UnsuperPoint,
    UnsuperPointConfig,
    describe,
    fold_batchnorm,
    load_unsuperpoint,
)
from ..model.weights import WeightsError, bundled_weights_path
from . import Options, Registration, register, torch_float32


class UnsuperPointExtractor:
    def __init__(self, net: UnsuperPoint, options: Options):
        self.device, self.detector, self.max_side = torch_float32(MODEL_NAME, options)
        # BatchNorm folded into the convolutions: the same outputs (to float rounding) for fewer passes over memory
        self.net = fold_batchnorm(net).to(self.device, memory_format=torch.channels_last)
        self.descriptor_dim = net.cfg.dim

    @torch.inference_mode()
    def __call__(
        self, image: np.ndarray, color: Color = "rgb", max_side: int | None = None, mask: np.ndarray | None = None
    ) -> Features:
        check_mask(mask, image.shape[:2])
        timings: dict[str, float] = {}
        with timed(timings, self.device, "preprocessing"):
            tensor, size = network_input(
                image, color, self.max_side if max_side is None else max_side, self.device, CELL, torch.channels_last
            )
        with timed(timings, self.device, "network"):
            scores, _, points, dense = self.net.cells(tensor)
        with timed(timings, self.device, "detection"):
            scores, points = scores[0], points[0]
            # cells of the padding hold no image; the border is kept clear as DKD keeps it
            keep = inside(points, size, margin=self.detector.border + 0.5)
            keep &= scores > self.detector.score_threshold
            scores, points = scores[keep], points[keep]
            d, allowed = self.detector, allowed_pixels(mask, size)
            order = choose(points.cpu().numpy(), scores.cpu().numpy(), d.limit, size, d.selection, d.grid_cell, allowed)
            order = torch.from_numpy(order).to(scores.device)
            scores, points = scores[order], points[order]
        with timed(timings, self.device, "description"):
            descriptors = describe(dense[0], points).cpu().numpy()
            points, scores = points.cpu().numpy(), scores.cpu().numpy()
        return finished(points, scores, descriptors, image.shape[:2], size, timings, mask)


def build(options: Options) -> UnsuperPointExtractor:
    path = options.weights or bundled_weights_path(MODEL_NAME)
    if not Path(path).is_file():
        raise WeightsError(f"no weights for {MODEL_NAME} at {path}: train them with `alike_ros train`")
    return UnsuperPointExtractor(load_unsuperpoint(path), options)


SUMMARY = "UnsuperPoint: one scored sub-pixel keypoint per 8x8 cell, no NMS"
register(Registration(MODEL_NAME, SUMMARY, UnsuperPointConfig().dim, build))
