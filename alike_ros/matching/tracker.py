"""Frame-to-frame tracks: every keypoint continues the track id of its match in the previous frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..extractor import Features
from .matcher import Matcher, Matches


@dataclass
class TrackedFrame:
    features: Features
    track_ids: np.ndarray  # N uint32
    track_lengths: np.ndarray  # N int: frames each track has been seen in, this one included
    matches: Matches  # against the previous frame (empty on the first frame or after a reset)
    previous: Features | None  # the frame matched against


class Tracker:
    def __init__(self, matcher: Matcher):
        self.matcher = matcher
        self._next_id = 0
        self._last: TrackedFrame | None = None

    def reset(self) -> None:
        """Forget the previous frame (the frame pipeline's rules say when); ids keep increasing."""
        self._last = None

    def _new_ids(self, count: int) -> np.ndarray:
        ids = (np.arange(count, dtype=np.uint64) + self._next_id) % 2**32  # ids wrap in their uint32 field
        self._next_id = int((self._next_id + count) % 2**32)
        return ids.astype(np.uint32)

    def update(self, features: Features) -> TrackedFrame:
        last = self._last
        if last is None:
            matches = Matches(np.zeros((0, 2), np.int64), np.zeros(0, np.float32))
        else:
            matches = self.matcher(last.features.descriptors, features.descriptors)
        ids = np.zeros(len(features), dtype=np.uint32)
        lengths = np.ones(len(features), dtype=np.int64)
        continued = np.zeros(len(features), dtype=bool)
        if len(matches):
            prev_idx, cur_idx = matches.indices.T
            ids[cur_idx] = last.track_ids[prev_idx]
            lengths[cur_idx] = last.track_lengths[prev_idx] + 1
            continued[cur_idx] = True
        ids[~continued] = self._new_ids(int((~continued).sum()))
        frame = TrackedFrame(features, ids, lengths, matches, last.features if last else None)
        self._last = frame
        return frame
