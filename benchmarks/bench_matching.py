"""Matching cost: mutual nearest neighbours of 2000 x 2000 descriptors (alike-t, D = 64) on the CPU.

    python benchmarks/bench_matching.py [--keypoints 2000] [--dim 64] [--runs 40] [--threads 2]

Rows, timed run by run interleaved (median ms), on synthetic unit descriptors shaped like a frame pair
(70 % of the second set are noisy copies of the first, permuted; the rest unrelated), the node's matcher
settings (mutual, min_similarity 0.8):
- `before`: the matcher as it was before issue 13 (kept here only, to compare in the same run);
- `Matcher`: `alike_ros.matching.matcher.Matcher` (the default, exact path);
- `Tracker.update`: the matcher plus the tracker's own bookkeeping (ids, lengths);
- the floor: one fp32 matrix product of that shape alone (torch and numpy), with its GFLOP/s;
- options not on the default path, each with its accuracy cost against the exact matches: the product in
  bf16 (fp32 accumulation where torch offers it) and in int8 (one scale per descriptor set, int32 sums).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from sections import machine

from alike_ros.detection.dkd import DetectorConfig
from alike_ros.extractor import Extractor, Features
from alike_ros.matching.matcher import Matcher, MatcherConfig, Matches
from alike_ros.matching.tracker import Tracker

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


def descriptor_pair(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)

    def unit(a: np.ndarray) -> np.ndarray:
        return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)

    d0 = unit(rng.normal(size=(n, dim)))
    copies = int(0.7 * n)
    d1 = unit(rng.normal(size=(n, dim)))
    d1[:copies] = unit(d0[rng.permutation(n)[:copies]] + rng.normal(scale=0.25 / np.sqrt(dim), size=(copies, dim)))
    return d0, d1[rng.permutation(n)]


def real_pair(n: int) -> tuple[np.ndarray, np.ndarray] | None:
    """alike-t descriptors (bundled weights, the node's detector with at most n keypoints) of two consecutive
    KITTI frames at 640x480, when ../shared is present."""
    frames = [REFERENCE / "images" / f"kitti_00010{k}.png" for k in (0, 1)]
    if not all(f.exists() for f in frames):
        return None
    extractor = Extractor("alike-t", None, "cpu", detector=DetectorConfig(max_keypoints=n))
    d0, d1 = (extractor(cv2.resize(cv2.imread(str(f)), (640, 480)), color="bgr").descriptors for f in frames)
    return d0, d1


def before(desc0: np.ndarray, desc1: np.ndarray, cfg: MatcherConfig) -> Matches:
    """The matcher before issue 13 (mutual/threshold path), verbatim."""
    d0 = torch.as_tensor(desc0, dtype=torch.float32)
    d1 = torch.as_tensor(desc1, dtype=torch.float32)
    sim = d0 @ d1.T
    best, nn01 = sim.max(dim=1)
    keep = best >= cfg.min_similarity
    if cfg.mutual:
        nn10 = sim.argmax(dim=0)
        keep &= nn10[nn01] == torch.arange(len(d0))
    idx0 = torch.nonzero(keep).squeeze(1)
    indices = torch.stack((idx0, nn01[idx0]), dim=1)
    return Matches(indices.cpu().numpy(), best[idx0].cpu().numpy().astype(np.float32))


def mutual_from(sim: torch.Tensor, threshold: float) -> np.ndarray:
    """Mutual nearest neighbours above `threshold` of a similarity matrix in any dtype (for the options)."""
    best, nn01 = sim.max(dim=1)
    nn10 = sim.argmax(dim=0)
    keep = (nn10[nn01] == torch.arange(len(sim))) & (best.float() >= threshold)
    idx0 = torch.nonzero(keep).squeeze(1)
    return torch.stack((idx0, nn01[idx0]), dim=1).numpy()


def bf16_product(d0: torch.Tensor, d1: torch.Tensor) -> torch.Tensor:
    a, b = d0.bfloat16(), d1.bfloat16()
    try:
        return torch.mm(a, b.T, out_dtype=torch.float32)  # fp32 accumulation and output, where supported
    except (TypeError, RuntimeError):
        return torch.mm(a, b.T)


def int8_sets(d0: torch.Tensor, d1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """int8 copies with one scale per set (largest component -> 127) and the factor back to cosine."""
    s0, s1 = 127 / d0.abs().max().item(), 127 / d1.abs().max().item()
    return (d0 * s0).round().to(torch.int8), (d1 * s1).round().to(torch.int8), 1 / (s0 * s1)


def agreement(exact: np.ndarray, other: np.ndarray) -> str:
    a, b = set(map(tuple, exact.tolist())), set(map(tuple, other.tolist()))
    share = len(a & b) / max(len(a), 1)
    return f"{len(b)} matches: {len(a & b)} of the exact {len(a)} ({share:.2%}), {len(b - a)} others"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keypoints", type=int, default=2000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--runs", type=int, default=40)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--synthetic", action="store_true", help="synthetic descriptors even where KITTI frames exist")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    real = None if args.synthetic or args.dim != 64 else real_pair(args.keypoints)
    d0, d1 = real if real is not None else descriptor_pair(args.keypoints, args.dim)
    source = "alike-t on KITTI frames 100/101" if real is not None else "synthetic"
    n, dim = len(d0), d0.shape[1]
    t0, t1 = torch.from_numpy(d0), torch.from_numpy(d1)
    cfg = MatcherConfig()
    matcher = Matcher(cfg)
    tracker = Tracker(matcher)
    f0 = Features(np.zeros((n, 2), np.float32), np.zeros(n, np.float32), d0, (480, 640))
    f1 = Features(np.zeros((len(d1), 2), np.float32), np.zeros(len(d1), np.float32), d1, (480, 640))
    q0, q1, back = int8_sets(t0, t1)
    q1t = q1.T.contiguous()

    def track() -> None:
        tracker.reset()
        tracker.update(f0)  # a first frame: new ids only
        tracker.update(f1)  # matched against f0

    cases: dict[str, Callable[[], object]] = {
        "before": lambda: before(d0, d1, cfg),
        "Matcher": lambda: matcher(d0, d1),
        "Tracker: first frame + matched frame": track,
        "torch.mm fp32 alone": lambda: torch.mm(t0, t1.T),
        "numpy matmul fp32 alone": lambda: d0 @ d1.T,
        "bf16 product + mutual NN": lambda: mutual_from(bf16_product(t0, t1), cfg.min_similarity),
    }
    try:
        torch._int_mm(q0, q1t)
        cases["int8 product + mutual NN"] = lambda: mutual_from(torch._int_mm(q0, q1t), cfg.min_similarity / back)
    except RuntimeError as exc:
        print("int8: torch._int_mm unavailable on this CPU build:", exc)

    exact = matcher(d0, d1).indices
    assert np.array_equal(exact, before(d0, d1, cfg).indices), "Matcher differs from the implementation before"
    notes = {"bf16 product + mutual NN": agreement(exact, mutual_from(bf16_product(t0, t1), cfg.min_similarity))}
    if "int8 product + mutual NN" in cases:
        int8 = mutual_from(torch._int_mm(q0, q1t), cfg.min_similarity / back)
        notes["int8 product + mutual NN"] = agreement(exact, int8)

    with torch.inference_mode():
        for fn in cases.values():
            for _ in range(3):
                fn()
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.runs):
            for name, fn in cases.items():
                start = time.perf_counter()
                fn()
                samples[name].append((time.perf_counter() - start) * 1e3)
    med = {name: statistics.median(v) for name, v in samples.items()}
    low = {name: min(v) for name, v in samples.items()}
    flop = 2 * n * len(d1) * dim
    print(
        f"{machine()}, torch {torch.__version__}, {args.threads} threads, {n} x {len(d1)} x {dim} "
        f"({source}), {args.runs} interleaved runs; {len(exact)} matches; load average at the end "
        f"{os.getloadavg()[0]:.1f}"
    )
    print("| what | median ms | min ms | note |")
    print("|---|---|---|---|")
    for name, ms in med.items():
        note = notes.get(name, "")
        if name.endswith("alone"):
            note = f"{flop / ms / 1e6:.0f} GFLOP/s at the median, {flop / low[name] / 1e6:.0f} at the min"
        if name.startswith("Tracker"):
            note = f"the tracker's own share (ids, lengths; both frames): {ms - med['Matcher']:.2f} ms"
        print(f"| {name} | {ms:.2f} | {low[name]:.2f} | {note} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
