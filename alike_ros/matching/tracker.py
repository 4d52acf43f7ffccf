"""Frame-to-frame tracks: every keypoint continues the track id of its match in the previous frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..features import Features
from .matcher import Matcher, Matches


@dataclass
class TrackedFrame:
    features: Features
    track_ids: np.ndarray  # N uint32
    track_lengths: np.ndarray  # N int: frames each track has been seen in, this one included
    matches: Matches  # against the previous frame (empty on the first frame or after a reset)
    previous: Features | None  # the frame matched against
    fallback: bool = False  # guided matching found too few matches: matched globally instead


class Tracker:
    def __init__(self, matcher: Matcher):
        self.matcher = matcher
        self._next_id = 0
        self._last: TrackedFrame | None = None
        self._motion = np.zeros(2, np.float32)  # median keypoint motion of the last matches, pixels
        self._motion_seconds = 0.0  # the time that motion took (0: unknown)
        self._global_matches = 0  # how many the last global matching found: what guided matching must keep

    def reset(self) -> None:
        """Forget the previous frame (the frame pipeline's rules say when); ids keep increasing."""
        self._last = None
        self._global_matches = 0

    def _new_ids(self, count: int) -> np.ndarray:
        ids = (np.arange(count, dtype=np.uint64) + self._next_id) % 2**32  # ids wrap in their uint32 field
        self._next_id = int((self._next_id + count) % 2**32)
        return ids.astype(np.uint32)

    def update(self, features: Features, seconds: float = 0.0) -> TrackedFrame:
        """The frame's tracks; `seconds`: the time since the previous frame (0: unknown), which scales the motion
        guided matching expects when frames arrive unevenly (a node that cannot keep up skips frames)."""
        last = self._last
        fallback = False
        if last is None:
            matches = Matches(np.zeros((0, 2), np.int64), np.zeros(0, np.float32))
        else:
            matches, fallback = self._match(last.features, features, seconds)
        ids = np.zeros(len(features), dtype=np.uint32)
        lengths = np.ones(len(features), dtype=np.int64)
        continued = np.zeros(len(features), dtype=bool)
        if len(matches):
            prev_idx, cur_idx = matches.indices.T
            ids[cur_idx] = last.track_ids[prev_idx]
            lengths[cur_idx] = last.track_lengths[prev_idx] + 1
            continued[cur_idx] = True
        ids[~continued] = self._new_ids(int((~continued).sum()))
        frame = TrackedFrame(features, ids, lengths, matches, last.features if last else None, fallback)
        self._last = frame
        return frame

    def _match(self, previous: Features, features: Features, seconds: float) -> tuple[Matches, bool]:
        """Matches against the previous frame, guided where `search_radius` says so once a global matching has given a
        motion to follow and a count to keep, and whether guided matching fell back to global matching. The count is
        the last global matching's, not the previous frame's: a slow decline of guided frames would otherwise pass."""
        config = self.matcher.config
        guided = config.search_radius > 0 and self._global_matches > 0
        fallback = False
        if guided:
            shift = self._expected_motion(seconds) if config.search_follows_motion else np.zeros(2, np.float32)
            matches = self.matcher.guided(
                previous.keypoints, previous.descriptors, features.keypoints, features.descriptors, shift
            )
            fallback = len(matches) < config.min_guided_share * self._global_matches
        if not guided or fallback:
            matches = self.matcher(previous.descriptors, features.descriptors)
            self._global_matches = len(matches)
        if len(matches):
            motion = features.keypoints[matches.indices[:, 1]] - previous.keypoints[matches.indices[:, 0]]
            self._motion = np.median(motion, axis=0).astype(np.float32)
            self._motion_seconds = seconds
        return matches, fallback

    def _expected_motion(self, seconds: float) -> np.ndarray:
        """The last motion, at the same speed over this frame's time when both times are known, else as it was."""
        if seconds > 0 and self._motion_seconds > 0:
            return (self._motion * np.float32(seconds / self._motion_seconds)).astype(np.float32)
        return self._motion
