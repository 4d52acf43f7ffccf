"""Mutual nearest-neighbour matching of unit descriptors on cosine similarity, on the descriptors' device."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..config import check, setting
from .guided import pairs_within


@dataclass
class Matches:
    indices: np.ndarray  # M x 2 int64: (index in the first set, index in the second set)
    similarity: np.ndarray  # M float32 cosine similarity

    def __len__(self) -> int:
        return len(self.indices)


@dataclass
class MatcherConfig:
    min_similarity: float = setting(
        0.8, "minimum cosine similarity of a match; pairs below are never reported", range=(-1.0, 1.0)
    )
    mutual: bool = setting(True, "keep only mutual nearest neighbours")
    ratio: float = setting(1.0, "Lowe's ratio test on descriptor distances; 1.0: off", range=(0.01, 1.0))
    search_radius: float = setting(
        0.0,
        "guided matching of a stream: a keypoint is compared only with those of the previous frame within this many "
        "pixels of where it was (see search_follows_motion); 0: with all of them (global matching)",
        range=(0.0, 4096.0),
    )
    search_follows_motion: bool = setting(
        True,
        "guided matching: move the search area by the median motion of the previous frame's matches, scaled to the "
        "time since the previous frame (header stamps)",
    )
    min_guided_share: float = setting(
        0.5,
        "guided matching: a frame that keeps fewer than this share of the matches of the last global matching is "
        "matched globally instead (fast motion, a jump); the first frame matched after a reset is matched globally",
        range=(0.0, 1.0),
    )

    def validate(self) -> None:
        check(self)


class Matcher:
    def __init__(self, config: MatcherConfig | None = None, device: str | torch.device = "cpu"):
        self.config = config or MatcherConfig()
        self.config.validate()
        self.device = torch.device(device)

    @torch.inference_mode()
    def __call__(self, desc0: np.ndarray | torch.Tensor, desc1: np.ndarray | torch.Tensor) -> Matches:
        d0 = torch.as_tensor(desc0, device=self.device, dtype=torch.float32)
        d1 = torch.as_tensor(desc1, device=self.device, dtype=torch.float32)
        if len(d0) == 0 or len(d1) == 0:
            return Matches(np.zeros((0, 2), np.int64), np.zeros(0, np.float32))
        _check_sizes(d0, d1)
        return self.from_similarity(torch.mm(d0, d1.T))  # the one product; both directions read it

    def guided(
        self, points0: np.ndarray, desc0: np.ndarray, points1: np.ndarray, desc1: np.ndarray, shift: np.ndarray
    ) -> Matches:
        """The rules over the pairs whose second point lies within `search_radius` of the first one moved by `shift`
        (pixels, the motion expected since the first frame): a point with no neighbour there stays unmatched, and the
        ratio test compares a point's two best neighbours. Host work on every device: a grid search (`guided`) and
        one product per candidate pair."""
        _check_sizes(desc0, desc1)
        rows, cols = pairs_within(points0 + shift, points1, self.config.search_radius)
        return self.from_pairs(rows, cols, np.einsum("ij,ij->i", desc0[rows], desc1[cols], dtype=np.float32))

    def from_similarity(self, sim: torch.Tensor) -> Matches:
        """The matches a similarity matrix (rows: the first set, columns: the second) gives under these rules; a
        caller that rules pairs out (stereo geometry) sets their similarity below -1."""
        if sim.shape[0] == 0 or sim.shape[1] == 0:
            return Matches(np.zeros((0, 2), np.int64), np.zeros(0, np.float32))
        if self.device.type != "cpu":
            return self._match_on_device(sim)
        idx0, idx1, best = self._mutual_cpu(sim.numpy())
        if self.config.ratio < 1.0 and sim.shape[1] > 1:  # only the rows that passed so far
            ok = self._ratio_ok(sim[torch.from_numpy(idx0)]).numpy()
            idx0, idx1, best = idx0[ok], idx1[ok], best[ok]
        return Matches(np.stack((idx0, idx1), axis=1).astype(np.int64), best.astype(np.float32))

    def from_pairs(self, rows: np.ndarray, cols: np.ndarray, similarity: np.ndarray) -> Matches:
        """The same rules over candidate pairs only (row i of the first set, column j of the second, and their
        similarity): what `from_similarity` gives on a matrix whose other entries are below -1 (tested equal), in
        time that grows with the candidates rather than with the matrix. Stereo rows and guided matching use it.

        Each row's best pair comes from unbuffered reductions (`np.maximum.at`), not from sorting: the row's largest
        similarity, then the first column that has it (ties go to the first index, as everywhere); the same per
        column. Single-threaded numpy: a busy core does not stall it, as it stalls torch's parallel kernels."""
        if len(rows) == 0:
            return Matches(np.zeros((0, 2), np.int64), np.zeros(0, np.float32))
        sim = np.asarray(similarity, np.float32)
        row_best, row_col = _best_per_index(rows, cols, sim)
        matched = np.flatnonzero(row_col >= 0)  # the rows with a candidate
        best, nn01 = row_best[matched], row_col[matched]
        keep = best >= np.float32(self.config.min_similarity)
        if self.config.mutual:
            _, col_row = _best_per_index(cols, rows, sim)
            keep &= col_row[nn01] == matched
        if self.config.ratio < 1.0:
            others = ~((sim == row_best[rows]) & (cols == row_col[rows]))  # all but each row's one best pair
            second = np.full_like(row_best, -3.0)
            np.maximum.at(second, rows[others], sim[others])
            distance = np.sqrt(np.maximum(2 - 2 * np.stack((best, second[matched])), 0))  # unit vectors
            keep &= distance[0] < self.config.ratio * distance[1]
        return Matches(np.stack((matched[keep], nn01[keep]), axis=1).astype(np.int64), best[keep])

    def _mutual_cpu(self, sim: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows, columns and similarities of the pairs that pass the threshold and the mutual check.

        numpy's single-pass SIMD reductions (row argmax, column max) instead of torch's index-tracking ones,
        which take several times longer here, with the same rules: first index on ties both ways. The column
        argmax comes from the column maxima and one comparison: the rows attaining each column's maximum,
        of which the first is the argmax."""
        cfg = self.config
        rows = np.arange(len(sim))
        nn01 = sim.argmax(axis=1)  # first maximum of each row
        best = sim[rows, nn01]
        keep = best >= np.float32(cfg.min_similarity)  # compared in float32, as torch compares
        if cfg.mutual:
            hits = np.flatnonzero(sim == sim.max(axis=0))  # (flat; 2-D np.nonzero is 15x slower) per column
            hit_rows, hit_cols = np.divmod(hits, sim.shape[1])  # its maximum's rows, in row order
            nn10 = np.full(sim.shape[1], len(sim))
            np.minimum.at(nn10, hit_cols, hit_rows)  # the first of them
            keep &= nn10[nn01] == rows
        idx0 = np.flatnonzero(keep)
        return idx0, nn01[idx0], best[idx0]

    def _ratio_ok(self, sim_rows: torch.Tensor) -> torch.Tensor:
        """Lowe's ratio test on the rows' two best similarities (unit vectors: |a - b|^2 = 2 - 2 cos)."""
        top2 = sim_rows.topk(2, dim=1).values
        dist = torch.sqrt((2 - 2 * top2).clamp(min=0))
        return dist[:, 0] < self.config.ratio * dist[:, 1]

    def _match_on_device(self, sim: torch.Tensor) -> Matches:
        """The same rules in torch, on the descriptors' device (a GPU): one copy to the host at the end."""
        cfg = self.config
        best, nn01 = sim.max(dim=1)
        keep = best >= cfg.min_similarity  # explicit test: no leaked pairs below the threshold
        if cfg.mutual:
            nn10 = sim.argmax(dim=0)
            keep &= nn10[nn01] == torch.arange(len(sim), device=sim.device)
        if cfg.ratio < 1.0 and sim.shape[1] > 1:
            keep &= self._ratio_ok(sim)
        idx0 = torch.nonzero(keep).squeeze(1)
        indices = torch.stack((idx0, nn01[idx0]), dim=1)
        return Matches(indices.cpu().numpy(), best[idx0].cpu().numpy().astype(np.float32))


def _check_sizes(desc0: np.ndarray | torch.Tensor, desc1: np.ndarray | torch.Tensor) -> None:
    if desc0.shape[1] != desc1.shape[1]:
        raise ValueError(f"descriptor sizes differ: {desc0.shape[1]} and {desc1.shape[1]}")


def _best_per_index(index: np.ndarray, other: np.ndarray, sim: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each value of `index` (0 .. max): the largest similarity among its pairs and the smallest `other` of the
    pairs that have it; -inf and -1 where it has no pair."""
    size, limit = int(index.max()) + 1, int(other.max()) + 1
    best = np.full(size, -np.inf, np.float32)
    np.maximum.at(best, index, sim)
    ties = sim == best[index]
    first = np.full(size, limit, np.int64)
    np.minimum.at(first, index[ties], other[ties])
    return best, np.where(first < limit, first, -1)
