"""Which candidate keypoints an image keeps: none in a masked pixel, and the budget spent best-first or over a grid.

Every extractor selects through here, whatever proposes its candidates (DKD's peaks, UnsuperPoint's cells, SIFT).
A point (x, y) lies in pixel (floor(x + 0.5), floor(y + 0.5)): integer coordinates are pixel centres.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

SELECTIONS = ("top", "grid")


def load_mask(path: str | Path) -> np.ndarray:
    """A mask image as an H x W bool array, True where keypoints are allowed (non-zero pixels; any channel of a
    colour image); ValueError when the file cannot be read as an image."""
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise ValueError(f"cannot read mask image {str(path)!r}")
    return mask.any(axis=2) if mask.ndim == 3 else mask != 0


def check_mask(mask: np.ndarray | None, image_size: tuple[int, int]) -> None:
    """ValueError when a mask does not have the image's (height, width): masks are drawn for one camera's frames."""
    if mask is not None and mask.shape[:2] != tuple(image_size):
        (mh, mw), (h, w) = mask.shape[:2], image_size
        raise ValueError(f"the mask is {mw}x{mh} but the image is {w}x{h}: a mask must have its camera's image size")


def allowed_pixels(mask: np.ndarray | None, size: tuple[int, int]) -> np.ndarray | None:
    """The mask at (height, width) `size`, the image the network sees (a downscaled image: `input.max_side`): a pixel
    there is allowed only when every pixel of the mask it covers is, so a keypoint in it maps back to an allowed
    pixel of the image as given (`inside_mask` guards the last float rounding). None without a mask."""
    if mask is None:
        return None
    allowed = mask.astype(bool, copy=False)  # the pipeline's masks are bool already: no copy per frame
    if allowed.shape == tuple(size):
        return allowed
    # INTER_AREA averages over each target pixel's footprint: 1 where the whole footprint is allowed
    share = cv2.resize(allowed.astype(np.float32), size[::-1], interpolation=cv2.INTER_AREA)
    return share >= 1.0 - 1e-5


def pixels_of_points(points: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(rows, columns) of the pixels N x 2 (x, y) points lie in, clipped to an image of (height, width) `size`."""
    points = np.asarray(points)
    # truncation is floor for every point at or right of -0.5; those left of it are clipped to 0 either way
    pixel = points if points.dtype.kind in "iu" else (points + 0.5).astype(np.int64)
    return np.clip(pixel[:, 1], 0, size[0] - 1), np.clip(pixel[:, 0], 0, size[1] - 1)


def inside_mask(points: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Which of N x 2 (x, y) points lie in an allowed pixel of the H x W bool map."""
    return allowed[pixels_of_points(points, allowed.shape)]


def best_first(values: np.ndarray, limit: int) -> np.ndarray:
    """Positions of the `limit` largest values, largest first, equal values in position order: what a stable
    descending sort cut at `limit` gives, with a partial sort first when there are more values."""
    n = len(values)
    if n > limit:
        kth = np.partition(values, n - limit)[n - limit]  # the limit-th largest value
        chosen = values > kth
        ties = np.flatnonzero(values == kth)[: limit - np.count_nonzero(chosen)]  # the first ones, as stable
        chosen[ties] = True
        positions = np.flatnonzero(chosen)
    else:
        positions = np.arange(n)
    return positions[np.argsort(-values[positions], kind="stable")]


def ranked(values: np.ndarray) -> np.ndarray:
    """Positions of all float32 values, largest first, equal values in position order (a stable descending sort), in
    two passes of numpy's 16-bit radix sort over the values' bits: several times faster than a comparison sort of
    thousands of candidates."""
    bits = (np.asarray(values, np.float32) + np.float32(0.0)).view(np.uint32)  # + 0: -0.0 becomes 0.0, a tie
    # bits ordered as the floats: negatives with every bit flipped, the others with the sign bit set; inverted to
    # sort descending
    key = ~np.where(bits >> 31 == 1, ~bits, bits | np.uint32(0x80000000))
    order = np.argsort((key & 0xFFFF).astype(np.uint16), kind="stable")
    return order[np.argsort((key[order] >> 16).astype(np.uint16), kind="stable")]


def spread(points: np.ndarray, scores: np.ndarray, limit: int, size: tuple[int, int], cell: int) -> np.ndarray:
    """Positions of `limit` of the N x 2 points, spread over the (height, width) image, best first.

    The image is cut into cells of `cell` px; each cell first gives its best `limit // cells` points (at least one),
    as ORB-SLAM and OpenVINS spread theirs; the budget left (by cells with fewer points) goes to the strongest of
    the others, so the count stays at `limit` while there are that many points. Ties go to the earlier point."""
    n = len(scores)
    if n <= limit:
        return best_first(scores, n)
    columns, rows = -(-size[1] // cell), -(-size[0] // cell)
    quota = max(1, limit // (columns * rows))
    y, x = pixels_of_points(points, size)
    cells = (y // cell) * columns + x // cell
    order = ranked(scores)
    key = cells[order]  # grouped by cell, best first within each (a stable sort keeps the score order)
    grouped = order[np.argsort(key.astype(np.uint16) if columns * rows <= 1 << 16 else key, kind="stable")]
    counts = np.bincount(cells, minlength=columns * rows)
    place = np.arange(n) - (np.cumsum(counts) - counts)[cells[grouped]]  # 0 for the best of its cell
    chosen = np.zeros(n, bool)
    chosen[grouped[place < quota]] = True
    if (first := np.count_nonzero(chosen)) > limit:  # more cells than the budget: the best of the cells' best
        chosen[order[chosen[order]][limit:]] = False
    else:  # the budget left: the strongest of the others, in score order
        chosen[order[~chosen[order]][: limit - first]] = True
    return order[chosen[order]]


def choose(
    points: np.ndarray,
    scores: np.ndarray,
    limit: int,
    size: tuple[int, int],
    selection: str,
    cell: int,
    allowed: np.ndarray | None = None,
) -> np.ndarray:
    """Positions of the points an image keeps, best first: among those in the `allowed` pixels (H x W bool; None:
    all), the `limit` strongest (`top`) or `spread` (`grid`)."""
    if allowed is not None:
        candidates = np.flatnonzero(inside_mask(points, allowed))
        return candidates[choose(points[candidates], scores[candidates], limit, size, selection, cell)]
    if selection == "grid":
        return spread(points, scores, limit, size, cell)
    return best_first(scores, limit)
