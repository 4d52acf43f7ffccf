"""`keynet`: Key.Net keypoints (`model.keynet`, refined by our DKD on its sigmoid response) described by the
`sift-residual` descriptor computed there (upright SIFT at a fixed keypoint size + the learned residual).
D = 128 with the bundled weights.

All detector settings apply as for ALIKE (the response map goes through the same NMS, threshold, top-k and
sub-pixel refinement). Key.Net's own evaluation used an NMS window of 15; here the default window (5) repeats
better and matches more (EVALUATION.md). `upscale` is keynet's own: Key.Net runs on the grey image upscaled that
many times, where its peaks are far more precise (HPatches MMA@1 30.5 at 2x against 23.1 at the native size, SIFT
32.7; research/pose_gap.py), and the points are described at the native size.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import torch

from ..detection.dkd import DetectorConfig, detect
from ..detection.selection import allowed_pixels, check_mask
from ..extractor import MAX_PIXELS, finished, network_input, timed, to_original_pixels, to_rgb_float
from ..features import Color, Features
from ..model.keynet import MODEL_NAME, KeyNet, KeyNetConfig
from ..model.residual import MODEL_NAME as DESCRIPTOR_MODEL
from ..model.residual import ResidualDescriptorNet, load_residual
from ..model.weights import WeightsError, bundled_weights_path, load_configured
from . import Options, Registration, register, torch_float32
from .sift_residual import sift_at, to_gray_uint8

SIFT_SIZE = 4.0  # px, the keypoint diameter SIFT describes Key.Net's points at (chosen by measurement: TRAINING.md)


def load_keynet(path: str | Path) -> KeyNet:
    """Key.Net from an exported weights file or a training checkpoint (its config under "keynet")."""
    return load_configured(path, MODEL_NAME, "keynet", KeyNetConfig, KeyNet)


class KeyNetExtractor:
    def __init__(
        self,
        detector_net: KeyNet,
        descriptor_net: ResidualDescriptorNet,
        options: Options,
        sift_size: float = SIFT_SIZE,
    ):
        self.device, self.detector, self.max_side = torch_float32(MODEL_NAME, options)
        # channels-last: oneDNN's fastest layout for these few-channel 5x5 convolutions
        self.keynet = detector_net.to(self.device, memory_format=torch.channels_last).eval()
        self.describer = descriptor_net.to(self.device).eval()
        self.descriptor_dim = descriptor_net.cfg.dim
        self.sift_size = sift_size

    @torch.inference_mode()
    def __call__(
        self, image: np.ndarray, color: Color = "rgb", max_side: int | None = None, mask: np.ndarray | None = None
    ) -> Features:
        check_mask(mask, image.shape[:2])
        timings: dict[str, float] = {}
        with timed(timings, self.device, "preprocessing"):
            rgb = to_rgb_float(image, color, self.max_side if max_side is None else max_side)
            gray = to_gray_uint8(rgb)
            detector = self.detector  # read once: the node may swap the settings between frames
            scale = detector.upscale
            check_upscaled_size(gray.shape, scale)
            tensor, _ = network_input(rgb, "rgb", 0, self.device, 8)  # the describer's cells must tile it exactly
            fine = upscaled(gray, scale)
            grey = torch.from_numpy(fine.astype(np.float32) / 255.0)[None, None].to(self.device)
        with timed(timings, self.device, "network"):
            scores = torch.sigmoid(self.keynet(grey.contiguous(memory_format=torch.channels_last))[0, 0])
            dense = self.describer.dense(tensor)[0]
        with timed(timings, self.device, "detection"):
            allowed = allowed_pixels(mask, gray.shape)
            if allowed is not None:  # each pixel becomes its scale x scale pixels of the finer map
                allowed = allowed.repeat(scale, axis=0).repeat(scale, axis=1)
            keypoints, kp_scores = detect(scores, scaled(detector, scale), allowed)
            order = torch.argsort(kp_scores, descending=True, stable=True)
            points = to_original_pixels(keypoints[order].cpu().numpy(), gray.shape, fine.shape)
            kp_scores = kp_scores[order].cpu().numpy()
        with timed(timings, self.device, "description"):
            sift = torch.from_numpy(sift_at(gray, points, self.sift_size)).to(self.device)
            descriptors = self.describer.describe(dense, torch.from_numpy(points).to(self.device), sift)
            descriptors = descriptors.cpu().numpy()
        return finished(points, kp_scores, descriptors, image.shape[:2], rgb.shape[:2], timings, mask)


def check_upscaled_size(shape: tuple[int, int], scale: int) -> None:
    """A ValueError when the image upscaled for detection would exceed the extractor's pixel limit."""
    h, w = shape
    if h * w * scale * scale > MAX_PIXELS:
        raise ValueError(
            f"keynet detects on the image upscaled {scale}x: {w}x{h} becomes {scale * w}x{scale * h}, over "
            f"{MAX_PIXELS} pixels; set max_side to downscale it"
        )


def upscaled(image: np.ndarray, scale: int) -> np.ndarray:
    """The image `scale` times larger, bicubic (itself at 1), in the pixel-centre convention `to_original_pixels`
    maps back from."""
    if scale == 1:
        return image
    return cv2.resize(image, (image.shape[1] * scale, image.shape[0] * scale), interpolation=cv2.INTER_CUBIC)


def scaled(detector: DetectorConfig, scale: int) -> DetectorConfig:
    """The detector settings, given in pixels of the image, for a response map `scale` times finer: the NMS window
    (kept odd), the border and the grid's cells grow with it; top-k and the threshold do not change."""
    if scale == 1:
        return detector
    window = scale * detector.window_size - (scale * detector.window_size + 1) % 2
    return dataclasses.replace(
        detector, window_size=window, border=scale * detector.border, grid_cell=scale * detector.grid_cell
    )


def build(options: Options) -> KeyNetExtractor:
    detector_path = options.weights or bundled_weights_path(MODEL_NAME)
    descriptor_path = bundled_weights_path(DESCRIPTOR_MODEL)
    for path, name in ((detector_path, MODEL_NAME), (descriptor_path, DESCRIPTOR_MODEL)):
        if not Path(path).is_file():
            raise WeightsError(f"no weights for {name} at {path}: train them with `alike_ros train`")
    return KeyNetExtractor(load_keynet(detector_path), load_residual(descriptor_path), options)


register(Registration(MODEL_NAME, "Key.Net keypoints with the sift-residual descriptor", 128, build))
