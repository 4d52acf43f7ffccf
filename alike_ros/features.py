"""What every extractor returns, and the colour orders it takes: the data the pipeline, the tracker, the messages
and the tools share, apart from any model (numpy only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Color = Literal["rgb", "bgr"]


@dataclass
class Features:
    keypoints: np.ndarray  # N x 2 float32, (x, y) pixels of the image as given
    scores: np.ndarray  # N float32, descending
    descriptors: np.ndarray  # N x D float32, unit length
    image_size: tuple[int, int]  # (height, width) of the image as given
    timings: dict[str, float] = field(default_factory=dict)  # milliseconds per stage

    def __len__(self) -> int:
        return len(self.keypoints)
