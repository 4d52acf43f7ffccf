"""The extractor: numpy image in; keypoints, scores, unit descriptors and per-stage timings out."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .detection.dkd import DetectorConfig, checked_detection, describe_dense, detect
from .detection.selection import allowed_pixels, check_mask, inside_mask
from .devices import checked_device
from .export import GRAPH_RUNTIMES
from .features import Color, Features
from .memory import keep_freed_memory
from .model.sparse_head import Branches, SparseHeadALNet
from .model.weights import load_model
from .sampling import interpolate

STAGES = ("preprocessing", "network", "detection", "description")
MAX_PIXELS = 50_000_000  # ~ 8K x 6K; beyond this the dense maps alone need several GiB
PIXEL_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}  # integer images: white; float: 1


@contextmanager
def timed(timings: dict[str, float], device: torch.device, name: str):
    """Milliseconds spent in the block, as timings[name]."""
    start = time.perf_counter()
    yield
    if device.type == "cuda":  # kernels are asynchronous; charge them to their stage
        torch.cuda.synchronize(device)
    timings[name] = (time.perf_counter() - start) * 1e3


def to_original_pixels(points: np.ndarray, original: tuple[int, int], used: tuple[int, int]) -> np.ndarray:
    """Map pixels of the resized image back to the image as given (pixel-centre convention of cv2.resize)."""
    if original == used:
        return points.astype(np.float32)
    scale = np.array([original[1] / used[1], original[0] / used[0]], dtype=np.float64)
    return ((points + 0.5) * scale - 0.5).astype(np.float32)


def network_input(
    image: np.ndarray,
    color: Color,
    max_side: int,
    device: torch.device,
    multiple: int,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> tuple[torch.Tensor, tuple[int, int]]:
    """An image as the network's input: 1 x 3 x H' x W' float32 RGB in [0, 1] on the device, zero-padded at the
    bottom/right to multiples of `multiple` (what the network's strides need), and the (height, width) of the
    image in it (after the `max_side` downscaling).

    The values are `to_rgb_float`'s exactly (float32 division by 255 or 65535), written by one division straight
    into a channels-last buffer: an 8-bit H x W x 3 image is already channels-last, so no transposed or float
    copy of the image is made first. On CUDA the raw pixels are copied (pinned), a quarter of the float bytes."""
    image = prepared(image, color, max_side)
    h, w = image.shape[:2]
    scale = PIXEL_SCALE.get(image.dtype, 1.0)
    if image.dtype == np.uint16:
        image = image.astype(np.int32)  # torch divides no uint16; exact
    source = torch.from_numpy(np.ascontiguousarray(image))
    if device.type == "cuda":
        source = source.pin_memory().to(device, non_blocking=True)
    padded = torch.empty(1, h + -h % multiple, w + -w % multiple, 3, device=device)
    padded[:, h:], padded[:, :h, w:] = 0, 0
    if source.ndim == 3 and color == "rgb":
        torch.div(source, scale, out=padded[0, :h, :w])
    else:  # grey to three channels, or BGR channel by channel (torch has no negative strides to flip with)
        for c, channel in enumerate((2, 1, 0) if color == "bgr" else (0, 1, 2)):
            torch.div(source if source.ndim == 2 else source[..., channel], scale, out=padded[0, :h, :w, c])
    return padded.permute(0, 3, 1, 2).contiguous(memory_format=memory_format), (h, w)


def finished(
    points: np.ndarray,
    scores: np.ndarray,
    descriptors: np.ndarray,
    original: tuple[int, int],
    used: tuple[int, int],
    timings: dict[str, float],
    mask: np.ndarray | None = None,
) -> Features:
    """One image's result, from keypoints in the pixels of the (resized) image the network saw: mapped back to
    the image as given, with the total of the stage timings. With a `mask` (the image's size, zero: no keypoints),
    a point the mapping back from a downscaled image puts in a masked pixel by float rounding is dropped: selection
    kept it out of the mask, this makes that a guarantee (at the native size selection's own check is the final one)."""
    timings["total"] = sum(timings[s] for s in STAGES)
    points = to_original_pixels(points, original, used)
    resized = original != used
    if mask is not None and resized and not (keep := inside_mask(points, mask.astype(bool, copy=False))).all():
        points, scores, descriptors = points[keep], scores[keep], descriptors[keep]
    return Features(points, scores, descriptors, original, timings)


def _validated(image: np.ndarray, color: Color) -> np.ndarray:
    """The image as H x W or H x W x 3 in its own dtype, after every check of its shape, dtype and values."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy array, got {type(image).__name__}")
    if color not in ("rgb", "bgr"):
        raise ValueError(f"color must be 'rgb' or 'bgr', got {color!r}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"image must be H x W or H x W x 3, got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image is empty (shape {image.shape})")
    if image.dtype in (np.float16, np.float32, np.float64):
        if not np.isfinite(image).all():
            raise ValueError("image contains NaN or infinite values")
        # compared as float32, the precision the network gets
        lo, hi = np.float32(image.min()), np.float32(image.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"float images must lie in [0, 1], got [{lo:g}, {hi:g}]")
    elif image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"unsupported image dtype {image.dtype}: use uint8, uint16 or float")
    return image


def _check_size(shape: tuple[int, ...], max_side: int) -> None:
    """The limit applies to the image the network sees, i.e. after the `max_side` downscaling."""
    h, w = shape[:2]
    sh, sw = resized_size(h, w, max_side)
    if sh * sw <= MAX_PIXELS:
        return
    if (sh, sw) == (h, w):
        raise ValueError(f"image of {w}x{h} exceeds {MAX_PIXELS} pixels; set max_side (--max-side) to downscale it")
    raise ValueError(
        f"image of {w}x{h} is {sw}x{sh} at max_side {max_side}, which still exceeds {MAX_PIXELS} pixels; "
        "set a smaller max_side"
    )


def prepared(image: np.ndarray, color: Color = "rgb", max_side: int = 0) -> np.ndarray:
    """Validate an image and downscale it by `resized_for(max_side)`, in its own dtype (float16 becomes float32
    where it is resized: cv2.resize has no float16).

    The downscaling runs before any float conversion, so a large 8-bit image never exists as full-size float32."""
    image = _validated(image, color)
    _check_size(image.shape, max_side)
    if image.dtype == np.float16 and resized_size(*image.shape[:2], max_side) != image.shape[:2]:
        image = image.astype(np.float32)
    return resized_for(image, max_side)


def to_rgb_float(image: np.ndarray, color: Color = "rgb", max_side: int = 0) -> np.ndarray:
    """Validate an image and return it as H x W x 3 float32 RGB in [0, 1], downscaled by `resized_for(max_side)`."""
    image = prepared(image, color, max_side)
    rgb = image.astype(np.float32) / np.float32(PIXEL_SCALE.get(image.dtype, 1.0))
    if rgb.ndim == 2:
        return np.repeat(rgb[..., None], 3, axis=2)
    return rgb[..., ::-1] if color == "bgr" else rgb


def resized_size(h: int, w: int, max_side: int) -> tuple[int, int]:
    """(height, width) after `resized_for`."""
    if max_side <= 0 or max(h, w) <= max_side:
        return h, w
    scale = max_side / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def resized_for(image: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale so the longer side is at most `max_side` (0: unchanged); area averaging avoids aliasing."""
    h, w = image.shape[:2]
    size = resized_size(h, w, max_side)
    if size == (h, w):
        return image
    return cv2.resize(image, size[::-1], interpolation=cv2.INTER_AREA)


def read_rgb(path: str | Path, max_side: int = 0) -> np.ndarray:
    """An image file as RGB uint8, downscaled by `resized_for`; a clear error when it cannot be read."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot read image {path}")
    return np.ascontiguousarray(resized_for(bgr, max_side)[:, :, ::-1])


class Extractor:
    """ALIKE keypoints and descriptors for one image at a time, on the chosen device.

    `fast=True` (default) is the fast exact path: BatchNorm folded, channels-last, score map per branch,
    descriptors only at keypoints. `fast=False` is the straightforward port of upstream (dense head,
    dense normalisation, NCHW), kept as the
    reference the fast path is tested and benchmarked against.

    `runtime="onnxruntime"` or `"openvino"` runs the fast path's network as an ONNX graph (exported once, in memory,
    at construction; see `alike_ros.export`) in that runtime, then our own DKD and description as with torch.
    """

    def __init__(
        self,
        model: str = "alike-t",
        weights: str | Path | None = None,
        device: str = "auto",
        half: bool = False,
        detector: DetectorConfig | None = None,
        max_side: int = 0,
        fast: bool = True,
        runtime: str = "torch",
    ):
        self.model_name = model
        keep_freed_memory()  # frame after frame, the same large buffers: keep them instead of faulting them in again
        self.device = checked_device(device, runtime, half, fast)
        self.runtime = runtime
        self.half = half
        self.detector = checked_detection(detector, max_side)
        self.max_side = max_side
        self.fast = fast
        self.net = load_model(model, weights)
        self.descriptor_dim = self.net.cfg.dim
        # channels-last (NHWC) is what oneDNN and cuDNN convolutions and pools run fastest on
        self.memory_format = torch.channels_last if fast else torch.contiguous_format
        if fast:
            self.net = SparseHeadALNet(self.net)
        # the graph's network stage; the torch module still describes the keypoints from its branches
        self.graph = GRAPH_RUNTIMES[runtime](self.net, self.device) if runtime in GRAPH_RUNTIMES else None
        if self.graph is not None:
            self.memory_format = torch.contiguous_format  # the graph's input layout: no copy before the session
        self.net = self.net.to(self.device, memory_format=self.memory_format).eval()
        if half:
            self.net = self.net.half()

    def _prepare(
        self, image: np.ndarray, color: Color, max_side: int
    ) -> tuple[tuple[int, int], torch.Tensor, tuple[int, int]]:
        """The (height, width) of the image as given, the network input, and the (height, width) it has."""
        tensor, size = network_input(image, color, max_side, self.device, 32, self.memory_format)
        return image.shape[:2], tensor.half() if self.half else tensor, size

    def _network(self, tensor: torch.Tensor, h: int, w: int) -> list[tuple[torch.Tensor, Callable]]:
        """Per image of the batch: the H x W sigmoid score map and a function giving unit descriptors at sub-pixel
        keypoints."""
        if self.fast:
            if self.graph is not None:
                sigmoid, branches = self.graph(tensor)
                scores = sigmoid[:, 0, :h, :w]
            else:
                logits, branches = self.net(tensor)
                scores = torch.sigmoid(logits[:, 0, :h, :w].float())

            def describer(image: Branches) -> Callable:
                return lambda keypoints: F.normalize(
                    interpolate(partial(self.net.descriptors_at, image), keypoints, h, w), dim=1
                )

            return [(scores[i], describer(branches.image(i))) for i in range(len(tensor))]
        logits, raw = self.net(tensor)
        dense = F.normalize(raw[:, :, :h, :w].float(), dim=1)
        scores = torch.sigmoid(logits[:, 0, :h, :w].float())
        return [(scores[i], partial(describe_dense, dense[i])) for i in range(len(tensor))]

    @torch.inference_mode()
    def score_map(self, image: np.ndarray, color: Color = "rgb") -> np.ndarray:
        """The dense sigmoid score map of the image the network sees (after any resize)."""
        _, tensor, (h, w) = self._prepare(image, color, self.max_side)
        return self._network(tensor, h, w)[0][0].cpu().numpy()

    @torch.inference_mode()
    def __call__(
        self, image: np.ndarray, color: Color = "rgb", max_side: int | None = None, mask: np.ndarray | None = None
    ) -> Features:
        return self.batch([(image, color)], max_side, [mask])[0]

    @torch.inference_mode()
    def batch(
        self,
        images: Sequence[tuple[np.ndarray, Color]],
        max_side: int | None = None,
        masks: Sequence[np.ndarray | None] | None = None,
    ) -> list[Features]:
        """Images of one size through the network as one batch, then detection and description per image: what
        calling the extractor on each gives (tested), in one network pass, which pays on a GPU. Each image's network
        timing is its share of the pass. ValueError when the sizes differ: padding to a common size would change
        the scores near the borders. `masks`: one per image (or None), as `__call__`'s `mask`."""
        if not images:
            return []
        masks = list(masks or [None] * len(images))
        for (image, _), mask in zip(images, masks, strict=True):
            check_mask(mask, image.shape[:2])
        if self.graph is not None and len(images) > 1:  # the exported graph takes one image
            return [self(image, color, max_side, mask) for (image, color), mask in zip(images, masks, strict=True)]
        side = self.max_side if max_side is None else max_side
        timings: dict[str, float] = {}
        with timed(timings, self.device, "preprocessing"):
            prepared = [self._prepare(image, color, side) for image, color in images]
        if len({size for _, _, size in prepared}) > 1:
            raise ValueError(f"a batch needs images of one size; got {sorted({s for _, _, s in prepared})}")
        (h, w), share = prepared[0][2], 1.0 / len(images)
        with timed(timings, self.device, "network"):
            maps = self._network(torch.cat([tensor for _, tensor, _ in prepared]), h, w)
        results = []
        for (original, _, _), (scores, describe), mask in zip(prepared, maps, masks, strict=True):
            own = {"preprocessing": timings["preprocessing"] * share, "network": timings["network"] * share}
            with timed(own, self.device, "detection"):
                keypoints, kp_scores = detect(scores, self.detector, allowed_pixels(mask, (h, w)))
                order = torch.argsort(kp_scores, descending=True, stable=True)
                keypoints, kp_scores = keypoints[order], kp_scores[order]
            with timed(own, self.device, "description"):  # the copies to the host are charged here, as before
                descriptors = describe(keypoints).cpu().numpy()
                points, values = keypoints.cpu().numpy(), kp_scores.cpu().numpy()
            results.append(finished(points, values, descriptors, original, (h, w), own, mask))
        return results
