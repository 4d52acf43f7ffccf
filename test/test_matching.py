"""Mutual nearest-neighbour matcher and the frame-to-frame tracker."""

from __future__ import annotations

import numpy as np
import pytest

from alike_ros.extractor import Features
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
