"""The one summary of latency samples (count, mean, median, p95, max, milliseconds) that every report uses: the
node's diagnostics, `bag process`, `bag report` and the benchmarks. numpy only, so any tool can import it."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np


@dataclass
class LatencySummary:
    count: int = 0
    mean: float = 0.0
    p50: float = 0.0
    p95: float = 0.0
    max: float = 0.0

    @classmethod
    def of(cls, samples: Collection[float]) -> LatencySummary:
        """The summary of a list, deque or array of samples; all zero when there are none."""
        if len(samples) == 0:
            return cls()
        values = np.fromiter(samples, dtype=np.float64)
        p50, p95 = np.percentile(values, (50, 95))
        return cls(len(values), float(values.mean()), float(p50), float(p95), float(values.max()))
