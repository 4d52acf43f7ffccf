"""One camera stream through the extractor and the tracker: the frame pipeline the node and the bag tool share.

`FramePipeline` builds and warms up the extractor, applies the track-reset rules (a stamp going backwards, an
image size change, matching turned off), matches each frame to the previous one and times every stage under
one vocabulary (`STAGES`). It knows nothing of ROS: the node and `bag process` decode their messages before
and encode the result after.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .config import check, setting
from .detection.dkd import DetectorConfig
from .detection.selection import load_mask
from .devices import checked_device
from .export import RUNTIMES
from .extractor import STAGES as EXTRACTOR_STAGES
from .extractors import FeatureExtractor, Options, names
from .extractors import build as build_model
from .features import Color, Features
from .matching.matcher import Matcher, MatcherConfig
from .matching.tracker import TrackedFrame, Tracker

STAGES = (*EXTRACTOR_STAGES, "matching")
# Settings a running pipeline cannot take: a new extractor must be built (and warmed up) for them.
REBUILD_SETTINGS = frozenset({"model", "weights", "device", "half", "runtime", "warmup_frames", "warmup_sizes"})
MAX_IMAGE_SIDE = 16_384


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """Parse "640x480,1280x720" into [(480, 640), (720, 1280)], (height, width); ValueError names a bad entry."""
    sizes = []
    for entry in text.split(","):
        width, x, height = entry.strip().lower().partition("x")
        if not (x and width.isdigit() and height.isdigit()):
            raise ValueError(f"warmup_sizes: {entry.strip()!r} is not WIDTHxHEIGHT (e.g. 640x480)")
        if not (1 <= int(width) <= MAX_IMAGE_SIDE and 1 <= int(height) <= MAX_IMAGE_SIDE):
            raise ValueError(f"warmup_sizes: {entry.strip()!r} has a side outside 1..{MAX_IMAGE_SIDE}")
        sizes.append((int(height), int(width)))
    return sizes


@dataclass
class PipelineConfig:
    model: str = setting("alike-t", "feature extractor: an ALIKE variant or another registered model", choices=names())
    weights: str = setting("", "weights file; empty: the weights bundled for the model (upstream's .pth work too)")
    device: str = setting("auto", "auto (first CUDA device, else CPU), cpu, cuda or cuda:N")
    half: bool = setting(False, "half-precision network (CUDA only)")
    runtime: str = setting(
        "torch",
        "what runs the network: torch, onnxruntime or openvino (the network exported once as an ONNX graph, then "
        "our own detection and description; needs that package, float32 only; openvino on the CPU only)",
        choices=RUNTIMES,
    )
    max_side: int = setting(
        0,
        "downscale so the longer side is at most this before the network (keypoints stay in input pixels); 0: native",
        range=(0, MAX_IMAGE_SIDE),
    )
    mask: str = setting(
        "",
        "mask image (PNG, the camera's image size): no keypoint lies in a pixel where it is zero (e.g. the robot's own "
        "body, a fisheye's border); the budget goes to the rest. A frame of another size is dropped with the reason; "
        "empty: no mask",
    )
    threads: int = setting(
        0,
        "CPU threads torch runs the network on (process-wide); 0: torch's default, one per core. Fewer than the "
        "cores left free by the other processes keeps the latency steady on a shared CPU",
        range=(0, 1024),
    )
    warmup_frames: int = setting(
        2,
        "frames of a synthetic image per warm-up size run through extraction and matching after (re)loading the "
        "model, so the first frames are not outliers",
        range=(0, 100),
    )
    warmup_sizes: str = setting(
        "640x480",
        "image sizes the warm-up runs at, WIDTHxHEIGHT comma-separated: every size the cameras send (the first "
        "frame of a size not warmed up is slower than a steady one: BENCHMARKS.md, First frame)",
    )
    matching: bool = setting(True, "match each frame to the previous one; off: no matches, every track new")
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    matcher: MatcherConfig = field(default_factory=MatcherConfig)

    def validate(self) -> None:
        """Raise ValueError with the reason the first bad setting is bad."""
        check(self)
        parse_sizes(self.warmup_sizes)
        self.detector.validate()
        self.matcher.validate()
        if self.weights and not Path(self.weights).expanduser().is_file():
            raise ValueError(f"weights file {self.weights!r} does not exist")
        mask_of(self)  # a mask that cannot be read is refused here, with its path
        checked_device(self.device, self.runtime, self.half)  # the extractor's own rules, before building it

    def needs_rebuild(self, other: PipelineConfig) -> bool:
        return any(getattr(self, name) != getattr(other, name) for name in REBUILD_SETTINGS)


@dataclass
class FrameResult:
    tracked: TrackedFrame
    timings: dict[str, float]  # milliseconds for each of STAGES
    previous_stamp_ns: int | None  # stamp of the frame matched against; None when there was none
    stamp_ns: int  # this frame's stamp
    reset: str = ""  # why the tracks restarted at this frame ("" when they did not)

    @property
    def seconds_since_previous(self) -> float:
        """Stamp difference to the frame matched against, s; 0 when there was none (velocities need it)."""
        return 0.0 if self.previous_stamp_ns is None else (self.stamp_ns - self.previous_stamp_ns) / 1e9


def warm_up_image(height: int, width: int) -> np.ndarray:
    """Smooth noise: enough structure that detection and description run at full size."""
    rng = np.random.default_rng(0)
    coarse = rng.random((height // 16 + 1, width // 16 + 1)).astype(np.float32)
    return np.kron(coarse, np.ones((16, 16), np.float32))[:height, :width]


def use_threads(threads: int) -> None:
    """torch's intra-op thread count for this process (0: leave torch's default)."""
    if threads and threads != torch.get_num_threads():
        torch.set_num_threads(threads)


def build_extractor(config: PipelineConfig) -> FeatureExtractor:
    """Load the model (not warmed up); ValueError or WeightsError when the settings cannot work."""
    config.validate()
    use_threads(config.threads)
    options = Options(
        config.weights or None, config.device, config.half, config.detector, config.max_side, config.runtime
    )
    return build_model(config.model, options)


def mask_of(config: PipelineConfig) -> np.ndarray | None:
    """The config's mask, read once (None without one)."""
    return load_mask(Path(config.mask).expanduser()) if config.mask else None


def batch_pays(extractor: FeatureExtractor) -> bool:
    """Whether frames of several cameras should go through the network together: on CUDA, where a batch fills the GPU
    better; on the CPU batching measured within the noise of one-by-one (BENCHMARKS.md, Several cameras)."""
    return extractor.device.type == "cuda" and hasattr(extractor, "batch")


def extract_in_batches(
    pipelines: list[FramePipeline], frames: list[tuple[np.ndarray, Color] | None]
) -> list[Features | None]:
    """The features of several cameras' frames, those sharing an extractor, a size and a max_side extracted as one
    batch each; None for a frame left to its camera to extract (absent, alone in its group, an extractor without
    batches, or a batch with an unusable image: one by one, its own camera counts it)."""
    groups: dict[tuple, list[int]] = {}
    for index, (pipeline, frame) in enumerate(zip(pipelines, frames, strict=True)):
        if frame is not None and hasattr(pipeline.extractor, "batch"):
            key = (id(pipeline.extractor), frame[0].shape[:2], pipeline.config.max_side)
            groups.setdefault(key, []).append(index)
    features: list[Features | None] = [None] * len(frames)
    for members in (m for m in groups.values() if len(m) > 1):
        pipeline = pipelines[members[0]]
        with contextlib.suppress(ValueError):
            masks = [pipelines[i].mask for i in members]
            found = pipeline.extractor.batch([frames[i] for i in members], pipeline.config.max_side, masks)
            for index, result in zip(members, found, strict=True):
                features[index] = result
    return features


class FramePipeline:
    """Frames of one camera, in order: features, tracks and matches against the previous frame.

    A new pipeline builds its extractor and warms it up (`warm_up`). Several cameras may share one extractor
    (`FramePipeline(config, extractor=other.extractor)`, already warm); each keeps its own tracker and reset state.
    """

    def __init__(self, config: PipelineConfig, extractor: FeatureExtractor | None = None):
        self.extractor = extractor or build_extractor(config)
        self.config = config
        self.mask = mask_of(config)
        self.tracker = Tracker(Matcher(config.matcher, self.extractor.device))
        self._previous_stamp_ns: int | None = None
        self._previous_size: tuple[int, int] | None = None
        if extractor is None:
            self.warm_up()

    def warm_up(self) -> None:
        """Run `warmup_frames` frames at each of `warmup_sizes` through extraction and matching, then forget them:
        the first use of an image size or a keypoint count pays for allocations and oneDNN kernel selection."""
        for height, width in parse_sizes(self.config.warmup_sizes):
            image = warm_up_image(height, width)
            for _ in range(self.config.warmup_frames):
                self.tracker.update(self.extractor(image))
            self.tracker.reset()

    def reconfigure(self, config: PipelineConfig) -> None:
        """Apply detector, matcher, max_side, matching and thread changes from the next frame on (the detector and
        the threads are the shared extractor's, the same for every camera)."""
        if config.needs_rebuild(self.config):
            raise ValueError(f"{sorted(REBUILD_SETTINGS)} need a new FramePipeline")
        config.validate()
        use_threads(config.threads)
        # Attribute swaps: each is read once per frame, so a frame never sees a half-made config.
        self.extractor.detector = replace(config.detector)
        self.tracker.matcher.config = replace(config.matcher)
        if config.mask != self.config.mask:
            self.mask = mask_of(config)
        self.config = config

    def reset_reason(self, stamp_ns: int, size: tuple[int, int]) -> str:
        """Why matching this frame to the previous one would pair unrelated frames ("" when it would not)."""
        if self._previous_stamp_ns is not None and stamp_ns < self._previous_stamp_ns:
            return "time went backwards"
        if self._previous_size is not None and size != self._previous_size:
            return "image size changed"
        return ""

    def __call__(self, image: np.ndarray, color: Color, stamp_ns: int, features: Features | None = None) -> FrameResult:
        """Process one frame; `stamp_ns` is its capture time (a header stamp), for the reset rules and the time since
        the previous frame (guided matching expects the motion over that time).
        `features`: the frame's, already extracted (in a batch with other cameras' frames)."""
        if features is None:
            # per camera: the extractor may be shared
            features = self.extractor(image, color, self.config.max_side, self.mask)
        start = time.perf_counter()
        reset = self.reset_reason(stamp_ns, features.image_size)
        if reset or not self.config.matching:
            self.tracker.reset()
        previous_ns = self._previous_stamp_ns
        tracked = self.tracker.update(features, 0.0 if previous_ns is None else (stamp_ns - previous_ns) / 1e9)
        timings = {stage: features.timings[stage] for stage in EXTRACTOR_STAGES}
        timings["matching"] = (time.perf_counter() - start) * 1e3
        previous = self._previous_stamp_ns if tracked.previous is not None else None
        self._previous_stamp_ns, self._previous_size = stamp_ns, features.image_size
        return FrameResult(tracked, timings, previous, stamp_ns, reset)
