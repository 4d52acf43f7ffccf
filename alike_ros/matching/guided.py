"""Candidate pairs for guided matching: keypoints of the new frame near where each keypoint of the previous frame is
expected, found through a grid of cells one search radius wide, so the cost grows with N x (points per cell)
rather than with N x N."""

from __future__ import annotations

import numpy as np


def pairs_within(points0: np.ndarray, points1: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices (i, j) of every pair with |points1[j] - points0[i]| <= radius (pixels), sorted by i.

    A point within the radius lies in one of the 3 x 3 cells around the point's own cell, and in the grid's
    row-major numbering each row of three cells is one range of cell numbers, hence of points1 sorted by cell."""
    if len(points0) == 0 or len(points1) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    cells0 = np.floor(points0 / radius).astype(np.int64)
    cells1 = np.floor(points1 / radius).astype(np.int64)
    origin = np.minimum(cells0.min(axis=0), cells1.min(axis=0)) - 1  # an empty cell on every side: no wrap-around
    cells0 -= origin
    cells1 -= origin
    width = int(max(cells0[:, 0].max(), cells1[:, 0].max())) + 2
    height = int(max(cells0[:, 1].max(), cells1[:, 1].max())) + 2
    numbers1 = cells1[:, 1] * width + cells1[:, 0]
    by_cell = np.argsort(numbers1, kind="stable")
    cell_start = np.concatenate(([0], np.cumsum(np.bincount(numbers1, minlength=width * height))))
    first = (cells0[:, 1, None] + np.arange(-1, 2)) * width + cells0[:, 0, None] - 1  # N x 3 rows of three cells
    start, end = cell_start[first], cell_start[first + 3]
    counts = (end - start).ravel()
    within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)  # 0, 1, ... in each range
    i = np.repeat(np.arange(len(points0)), counts.reshape(-1, 3).sum(axis=1))
    j = by_cell[np.repeat(start.ravel(), counts) + within]
    dx = points1[:, 0][j] - points0[:, 0][i]
    dy = points1[:, 1][j] - points0[:, 1][i]
    near = dx * dx + dy * dy <= radius * radius
    return i[near], j[near]
