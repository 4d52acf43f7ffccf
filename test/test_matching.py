"""Mutual nearest-neighbour matcher and the frame-to-frame tracker."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from alike_ros.extractor import Features
from alike_ros.matching.guided import pairs_within
from alike_ros.matching.matcher import Matcher, MatcherConfig
from alike_ros.matching.tracker import Tracker


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def random_descriptors(n: int, dim: int = 64, seed: int = 0) -> np.ndarray:
    return unit(np.random.default_rng(seed).normal(size=(n, dim)))


def test_permutation_is_recovered():
    d0 = random_descriptors(200)
    perm = np.random.default_rng(1).permutation(200)
    m = Matcher()(d0, d0[perm])
    assert len(m) == 200
    assert np.array_equal(perm[m.indices[:, 1]], m.indices[:, 0])
    np.testing.assert_allclose(m.similarity, 1.0, atol=1e-5)


def test_no_leaked_match_below_the_threshold():
    """Upstream's demo matcher reports (0, 0) when row 0 and column 0 have no similarity >= 0.9."""
    d0 = np.eye(4, 8, dtype=np.float32)
    d1 = np.eye(4, 8, k=4, dtype=np.float32)  # orthogonal to every row of d0: all similarities 0
    assert len(Matcher(MatcherConfig(min_similarity=0.9))(d0, d1)) == 0
    d1[1] = d0[1]
    m = Matcher(MatcherConfig(min_similarity=0.9))(d0, d1)
    assert m.indices.tolist() == [[1, 1]]


def test_mutual_check_and_ratio_test():
    d1 = unit(np.array([[1.0, 0, 0], [0.95, 0.3, 0], [0, 0, 1]]))
    d0 = unit(np.array([[1.0, 0.1, 0], [0.96, 0.28, 0]]))
    both = Matcher(MatcherConfig(mutual=False))(d0, d1)
    assert both.indices.tolist() == [[0, 0], [1, 1]]
    # distances to the two nearest columns: row 0 0.100 / 0.206 (ratio 0.48), row 1 0.022 / 0.283 (ratio 0.08)
    assert Matcher(MatcherConfig(ratio=0.3))(d0, d1).indices.tolist() == [[1, 1]]
    assert Matcher(MatcherConfig(ratio=0.05))(d0, d1).indices.tolist() == []
    # without column 1, both rows want column 0; only the closer (row 0) is mutual
    assert Matcher()(d0, d1[[0, 2]]).indices.tolist() == [[0, 0]]
    assert Matcher(MatcherConfig(mutual=False))(d0, d1[[0, 2]]).indices.tolist() == [[0, 0], [1, 0]]


def test_empty_and_mismatched_inputs():
    assert len(Matcher()(np.zeros((0, 64), np.float32), random_descriptors(3))) == 0
    with pytest.raises(ValueError, match="sizes differ"):
        Matcher()(random_descriptors(3, 64), random_descriptors(3, 128))
    for bad in (dict(min_similarity=1.5), dict(ratio=0.0), dict(ratio=1.2)):
        with pytest.raises(ValueError):
            MatcherConfig(**bad).validate()


def frame(desc: np.ndarray, size=(100, 100)) -> Features:
    pts = np.random.default_rng(len(desc)).uniform(0, 99, (len(desc), 2)).astype(np.float32)
    return Features(pts, np.linspace(1, 0, len(desc), dtype=np.float32), desc, size)


def test_tracks_continue_and_new_ids_are_fresh():
    tracker = Tracker(Matcher(MatcherConfig(min_similarity=0.9)))
    d = random_descriptors(10)
    first = tracker.update(frame(d))
    assert first.track_ids.tolist() == list(range(10)) and len(first.matches) == 0
    new = random_descriptors(3, seed=5)
    second = tracker.update(frame(np.concatenate([d[[4, 2, 7]], new])))
    assert second.track_ids[:3].tolist() == [4, 2, 7]
    assert second.track_lengths.tolist() == [2, 2, 2, 1, 1, 1]
    assert set(second.track_ids[3:]) == {10, 11, 12}
    third = tracker.update(frame(second.features.descriptors))
    assert third.track_lengths[:3].tolist() == [3, 3, 3]


def test_reset_starts_new_tracks():
    tracker = Tracker(Matcher())
    d = random_descriptors(5)
    tracker.update(frame(d))
    tracker.reset()
    after = tracker.update(frame(d))
    assert len(after.matches) == 0 and after.previous is None and after.track_lengths.max() == 1
    assert set(after.track_ids).isdisjoint(range(5))  # ids keep increasing


def reference_matches(d0: np.ndarray, d1: np.ndarray, cfg: MatcherConfig) -> tuple[list[list[int]], list[float]]:
    """The matcher's definition, one row at a time in float64: first index on ties, as argmax."""
    sim = d0.astype(np.float64) @ d1.astype(np.float64).T
    pairs, similarity = [], []
    for i in range(len(d0)):
        j = int(np.argmax(sim[i]))
        if sim[i, j] < cfg.min_similarity:
            continue
        if cfg.mutual and int(np.argmax(sim[:, j])) != i:
            continue
        if cfg.ratio < 1.0 and len(d1) > 1:
            first, second = np.sort(sim[i])[::-1][:2]
            if not np.sqrt(max(2 - 2 * first, 0)) < cfg.ratio * np.sqrt(max(2 - 2 * second, 0)):
                continue
        pairs.append([i, j])
        similarity.append(sim[i, j])
    return pairs, similarity


CONFIGS = [
    MatcherConfig(),
    MatcherConfig(min_similarity=0.0),
    MatcherConfig(min_similarity=-1.0, mutual=False),
    MatcherConfig(min_similarity=0.1, ratio=0.9),
    MatcherConfig(min_similarity=-1.0, mutual=False, ratio=0.95),
]


@pytest.mark.parametrize("cfg", CONFIGS)
def test_matches_equal_the_reference_with_ties(cfg):
    """Coarse descriptors (multiples of 1/8, 16-D) make every similarity exact in float32 whatever the
    summation order, and make ties common: the matcher must resolve them as the reference (first index)."""
    rng = np.random.default_rng(5)
    for n0, n1 in [(300, 200), (200, 300), (1, 7), (7, 1), (257, 513)]:
        d0 = (rng.integers(-2, 3, size=(n0, 16)) / 8).astype(np.float32)
        d1 = (rng.integers(-2, 3, size=(n1, 16)) / 8).astype(np.float32)
        d1[: n1 // 3] = d0[rng.integers(0, n0, n1 // 3)]  # exact copies: more ties, and similarities near 1
        m = Matcher(cfg)(d0, d1)
        pairs, similarity = reference_matches(d0, d1, cfg)
        assert m.indices.dtype == np.int64 and m.similarity.dtype == np.float32
        assert m.indices.tolist() == pairs, (n0, n1)
        np.testing.assert_array_equal(m.similarity, np.float32(similarity))


@pytest.mark.parametrize("cfg", CONFIGS[:2])
def test_matches_equal_the_reference_on_unit_descriptors(cfg):
    d0 = random_descriptors(700, seed=2)
    d1 = unit(d0[np.random.default_rng(3).permutation(700)[:600]] + np.random.default_rng(4).normal(0, 0.04, (600, 64)))
    m = Matcher(cfg)(d0, d1)
    pairs, similarity = reference_matches(d0, d1, cfg)
    assert len(pairs) > 100
    assert m.indices.tolist() == pairs
    np.testing.assert_allclose(m.similarity, similarity, atol=1e-6)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_the_device_path_equals_the_reference(cfg):
    """What a GPU runs (torch reductions on the device), exercised here on the CPU."""
    import torch

    rng = np.random.default_rng(6)
    d0 = (rng.integers(-2, 3, size=(300, 16)) / 8).astype(np.float32)
    d1 = (rng.integers(-2, 3, size=(200, 16)) / 8).astype(np.float32)
    d1[:60] = d0[rng.integers(0, 300, 60)]
    m = Matcher(cfg)._match_on_device(torch.from_numpy(d0) @ torch.from_numpy(d1).T)
    pairs, similarity = reference_matches(d0, d1, cfg)
    assert m.indices.tolist() == pairs
    np.testing.assert_array_equal(m.similarity, np.float32(similarity))


# ---- guided matching


@pytest.mark.parametrize("radius", [0.5, 3.0, 17.5, 400.0])
def test_pairs_within_are_exactly_the_pairs_within_the_radius(radius):
    rng = np.random.default_rng(8)
    p0 = rng.uniform(-50, 700, (400, 2)).astype(np.float32)
    p1 = np.concatenate([p0[:100] + rng.normal(0, 2, (100, 2)), rng.uniform(-50, 700, (300, 2))]).astype(np.float32)
    i, j = pairs_within(p0, p1, radius)
    dx, dy = p1[None, :, 0] - p0[:, None, 0], p1[None, :, 1] - p0[:, None, 1]  # the same float32 arithmetic
    expected = np.argwhere(dx * dx + dy * dy <= radius * radius)
    assert len(expected) > 0
    assert sorted(zip(i.tolist(), j.tolist(), strict=True)) == sorted(map(tuple, expected.tolist()))
    assert np.all(np.diff(i) >= 0)  # by row
    empty = np.zeros((0, 2), np.float32)
    assert all(len(x) == 0 for x in (*pairs_within(empty, p1, radius), *pairs_within(p0, empty, radius)))


@pytest.mark.parametrize("cfg", CONFIGS)
def test_guided_matching_is_global_matching_restricted_to_the_search_area(cfg):
    """The matcher's rules (threshold, mutual check, ratio test, first index on ties) over the pairs within the
    radius of each point moved by the shift: what the dense matrix gives with every other pair ruled out."""
    rng = np.random.default_rng(7)
    d0 = (rng.integers(-4, 5, size=(300, 16)) / 8).astype(np.float32)  # exact in float32, whatever the order
    d1 = (rng.integers(-4, 5, size=(200, 16)) / 8).astype(np.float32)
    d1[:80] = d0[rng.integers(0, 300, 80)]  # ties, and similarities above the threshold
    p0 = rng.uniform(0, 320, (300, 2)).astype(np.float32)
    p1 = rng.uniform(0, 320, (200, 2)).astype(np.float32)
    shift = np.array([5.0, -3.0], np.float32)
    cfg = replace(cfg, search_radius=40.0)
    guided = Matcher(cfg).guided(p0, d0, p1, d1, shift)
    moved = p0 + shift
    dx, dy = p1[None, :, 0] - moved[:, None, 0], p1[None, :, 1] - moved[:, None, 1]
    sim = np.where(dx * dx + dy * dy <= 40.0**2, d0 @ d1.T, np.float32(-3.0))
    dense = Matcher(cfg).from_similarity(torch.from_numpy(sim))
    assert len(guided) > 10
    assert guided.indices.tolist() == dense.indices.tolist()
    np.testing.assert_array_equal(guided.similarity, dense.similarity)


def moving_frames(steps: list[tuple[float, float]], n: int = 200) -> list[Features]:
    """A scene of n points moving by each step in turn, the same descriptors with a little noise, shuffled."""
    rng = np.random.default_rng(9)
    points, desc = rng.uniform(100, 500, (n, 2)), random_descriptors(n, seed=9)
    frames, position = [], np.zeros(2)
    for step in [(0.0, 0.0), *steps]:
        position = position + step
        order = rng.permutation(n)
        noisy = unit(desc[order] + rng.normal(0, 0.02, desc.shape))
        frames.append(
            Features((points[order] + position).astype(np.float32), np.ones(n, np.float32), noisy, (600, 800))
        )
    return frames


def test_guided_tracking_follows_the_motion_and_falls_back_on_a_jump():
    frames = moving_frames([(12.0, -5.0), (12.0, -5.0), (13.0, -4.0), (80.0, 60.0), (80.0, 61.0)])
    config = MatcherConfig(search_radius=8.0)
    guided, plain = Tracker(Matcher(config)), Tracker(Matcher(MatcherConfig()))
    fallbacks = []
    for features in frames:
        a, b = guided.update(features), plain.update(features)
        assert a.matches.indices.tolist() == b.matches.indices.tolist()  # nothing lost against global matching
        assert a.track_ids.tolist() == b.track_ids.tolist()
        fallbacks.append(a.fallback)
    # the first pair is matched globally (no motion known yet), the jump falls back to global matching, the rest is
    # found within 8 px of where the last motion predicts
    assert fallbacks == [False, False, False, False, True, False]
    assert len(b.matches) == 200

    still = Tracker(Matcher(replace(config, search_follows_motion=False)))
    assert [still.update(f).fallback for f in frames] == [False, False, True, True, True, True]


def test_guided_tracking_expects_the_motion_over_the_time_between_frames():
    """A node that cannot keep up skips frames: at a steady 10 px a frame, 1 to 3 frames apart, the last motion alone
    misses the next one by up to 20 px; scaled by the time between the frames it is where the points are."""
    times = [0.0, 1.0, 2.0, 4.0, 5.0, 8.0, 9.0]
    frames = moving_frames([(10.0 * (b - a), -4.0 * (b - a)) for a, b in zip(times, times[1:], strict=False)])
    config = MatcherConfig(search_radius=8.0)
    timed, untimed, plain = (Tracker(Matcher(c)) for c in (config, config, MatcherConfig()))
    fallbacks: dict[str, list[bool]] = {"timed": [], "untimed": []}
    for k, features in enumerate(frames):
        seconds = times[k] - times[k - 1] if k else 0.0
        a, b, c = timed.update(features, seconds), untimed.update(features), plain.update(features, seconds)
        assert a.matches.indices.tolist() == b.matches.indices.tolist() == c.matches.indices.tolist()
        fallbacks["timed"].append(a.fallback)
        fallbacks["untimed"].append(b.fallback)
    assert not any(fallbacks["timed"])
    assert fallbacks["untimed"] == [False, False, False, True, True, True, True]


def test_search_settings_are_validated():
    for bad in (dict(search_radius=-1.0), dict(min_guided_share=1.5)):
        with pytest.raises(ValueError):
            MatcherConfig(**bad).validate()
