"""Deterministic synthetic homography pairs from held-out photos: viewpoint-like and illumination-like.

Each photo (resized so its longer side is `max_side`) is the reference image; every warp draws from a
generator seeded by the photo's file name and the warp's index, so a pair never depends on which other
photos or warps are generated. The homography maps reference pixels to target pixels (pixel centres at
integers, as cv2.warpPerspective assumes).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..extractor import read_rgb
from ..geometry import warp_points

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".bmp")
MIN_OVERLAP = 0.5  # fraction of the target that must show the reference; HPatches pairs overlap at least this


@dataclass
class Pair:
    name: str
    kind: str  # "v" viewpoint-like, "i" illumination-like (HPatches letters)
    image0: np.ndarray  # H x W x 3 uint8 RGB
    image1: np.ndarray
    homography: np.ndarray  # 3 x 3 float64, image0 pixels -> image1 pixels


def _about_centre(matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Conjugate a 3x3 transform so that it acts around the image centre instead of the origin."""
    h, w = size
    shift = np.array([[1, 0, (w - 1) / 2], [0, 1, (h - 1) / 2], [0, 0, 1]], np.float64)
    return shift @ matrix @ np.linalg.inv(shift)


def _similarity(angle_deg: float, scale: float, tx: float, ty: float) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    return np.array(
        [[scale * np.cos(a), -scale * np.sin(a), tx], [scale * np.sin(a), scale * np.cos(a), ty], [0, 0, 1]]
    )


def viewpoint_homography(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A perspective change (corners moved by up to 15% of the image) composed with a rotation of up to
    30 degrees, a scale change of up to 1.3x either way and a small translation, all about the centre."""
    h, w = size
    src = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float32)
    dst = src + rng.uniform(-0.15, 0.15, (4, 2)).astype(np.float32) * np.float32([w, h])
    perspective = cv2.getPerspectiveTransform(src, dst).astype(np.float64)
    similarity = _similarity(
        rng.uniform(-30, 30), np.exp(rng.uniform(np.log(1 / 1.3), np.log(1.3))), *rng.uniform(-0.05, 0.05, 2) * [w, h]
    )
    return _about_centre(similarity, size) @ perspective


def illumination_homography(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Identity half of the time, otherwise a mild similarity (HPatches illumination pairs are near-identity)."""
    if rng.random() < 0.5:
        return np.eye(3)
    return _about_centre(_similarity(rng.uniform(-3, 3), rng.uniform(0.97, 1.03), *rng.uniform(-6, 6, 2)), size)


def photometric(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """A strong illumination change: gamma, contrast, brightness, colour cast, a lighting gradient, blur, noise."""
    img = image.astype(np.float32) / 255.0
    h, w = img.shape[:2]
    img = img ** np.exp(rng.uniform(np.log(0.45), np.log(2.2)))
    img = (img - 0.5) * rng.uniform(0.5, 1.5) + 0.5 + rng.uniform(-0.2, 0.2)
    img *= rng.uniform(0.85, 1.15, 3).astype(np.float32)
    direction = rng.normal(size=2)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    ramp = (direction[0] * (xx / w - 0.5) + direction[1] * (yy / h - 0.5)) / np.linalg.norm(direction)
    img *= (1.0 + rng.uniform(0.3, 0.8) * ramp)[..., None]
    sigma = rng.uniform(0.0, 1.5)
    if sigma > 0.3:  # below this the 3-tap kernel is almost a delta; skip it
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    img += rng.normal(0.0, rng.uniform(0.0, 0.03), img.shape).astype(np.float32)
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def overlap(homography: np.ndarray, size: tuple[int, int]) -> float:
    """Fraction of target pixels that show a reference pixel (on a coarse grid: enough to reject bad warps)."""
    h, w = size
    ys, xs = np.mgrid[0 : h : max(1, h // 32), 0 : w : max(1, w // 32)]
    grid = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)
    back = warp_points(np.linalg.inv(homography), grid)
    valid = (back[:, 0] >= 0) & (back[:, 0] <= w - 1) & (back[:, 1] >= 0) & (back[:, 1] <= h - 1)
    return float(valid.mean())


def make_pair(image: np.ndarray, name: str, kind: str, index: int) -> Pair:
    """The `index`-th warp of `kind` for the photo `name`; deterministic in (name, kind, index)."""
    rng = np.random.default_rng([zlib.crc32(name.encode()), ord(kind), index])
    size = image.shape[:2]
    while True:  # redraw the rare warps that leave too little of the reference in view
        homography = viewpoint_homography(rng, size) if kind == "v" else illumination_homography(rng, size)
        if overlap(homography, size) >= MIN_OVERLAP:
            break
    warped = cv2.warpPerspective(image, homography, (size[1], size[0]), flags=cv2.INTER_LINEAR)
    if kind == "i":
        warped = photometric(rng, warped)
    return Pair(f"{Path(name).stem}/{kind}{index}", kind, image, warped, homography)


def synthetic_pairs(
    photos_dir: Path, max_side: int = 480, viewpoint: int = 2, illumination: int = 2, limit: int = 0
) -> Iterator[tuple[np.ndarray, list[Pair]]]:
    """For each photo (sorted by name, the first `limit` if > 0): its reference image and its pairs."""
    paths = sorted(p for p in Path(photos_dir).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    for path in paths[:limit] if limit > 0 else paths:
        image = read_rgb(path, max_side)
        pairs = [make_pair(image, path.name, "v", k) for k in range(viewpoint)]
        pairs += [make_pair(image, path.name, "i", k) for k in range(illumination)]
        yield image, pairs
