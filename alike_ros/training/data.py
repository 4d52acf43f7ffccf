"""Synthetic training pairs: one photo, two views related by a known homography, each with its own photometry.

Image A is a square crop of the photo, image B the photo seen through a random homography H composed with
that crop, so H maps A pixels to B pixels exactly (OpenCV pixel convention, integer = pixel centre).
Every sample is a pure function of (seed, index): training resumes reproducibly without data-loader state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from ..extractor import read_rgb
from ..geometry import inside, tilt_homography, warp_points

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


@dataclass
class WarpConfig:
    """Ranges of the random homography (A -> B), applied about the crop centre."""

    max_rotation_deg: float = 25.0
    scale_range: tuple[float, float] = (0.75, 1.35)  # log-uniform zoom of B relative to A
    max_translation: float = 0.15  # fraction of the crop side
    max_perspective: float = 0.12  # corner displacement as a fraction of the crop side
    # out-of-plane rotation of the scene plane (geometry.tilt_homography), uniform in [0, max]: graf1->3 is
    # about a 40-degree tilt, which the corner jitter alone rarely reaches (research/viewpoint_gap.py)
    max_tilt_deg: float = 0.0


@dataclass
class PhotometricConfig:
    """Ranges of the independent photometric changes of each view; `enabled: false` keeps pixels exact."""

    enabled: bool = True
    brightness: float = 0.15  # additive, +-
    contrast: tuple[float, float] = (0.7, 1.3)
    gamma: tuple[float, float] = (0.7, 1.5)
    noise_std: float = 0.03  # max std of additive Gaussian noise
    blur_prob: float = 0.4
    blur_sigma: tuple[float, float] = (0.3, 1.5)
    gradient: float = 0.35  # max relative illumination change across the image (linear ramp)


@dataclass
class DataConfig:
    folder: str = "data/photos/train"  # where scripts/fetch_photos.sh puts them; the configs under config/ name one
    size: int = 256  # crop side in pixels (multiple of 32)
    cache_side: int = 512  # photos are downscaled once to this longest side and kept in memory
    crop_range: tuple[float, float] = (0.5, 1.0)  # crop side as a fraction of the photo's shorter side
    val_images: int = 8  # photos set aside (the last ones in name order) for the validation pairs
    val_pairs: int = 24
    warp: WarpConfig = field(default_factory=WarpConfig)
    photometric: PhotometricConfig = field(default_factory=PhotometricConfig)


def list_images(folder: str | Path) -> list[Path]:
    """Image files of a folder in name order (so the held-out split does not depend on the filesystem)."""
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"no images in {folder}")
    return paths


def random_homography(rng: np.random.Generator, size: int, cfg: WarpConfig) -> np.ndarray:
    """A 3x3 homography on a size x size image: a tilt of the scene plane, then a similarity about the centre
    plus jittered corners."""
    c = (size - 1) / 2.0
    # drawn only when enabled, so configs without a tilt keep their random streams (and validation pairs)
    tilt = tilt_homography((size, size), *rng.uniform(0, (cfg.max_tilt_deg, 180))) if cfg.max_tilt_deg else np.eye(3)
    angle = np.deg2rad(rng.uniform(-cfg.max_rotation_deg, cfg.max_rotation_deg))
    scale = np.exp(rng.uniform(*np.log(cfg.scale_range)))
    shift = rng.uniform(-cfg.max_translation, cfg.max_translation, 2) * size
    corners = np.array([[0, 0], [size - 1, 0], [size - 1, size - 1], [0, size - 1]], np.float64)
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = (corners - c) @ rot.T + c + shift
    moved += rng.uniform(-cfg.max_perspective, cfg.max_perspective, (4, 2)) * size
    similarity = cv2.getPerspectiveTransform(corners.astype(np.float32), moved.astype(np.float32))
    return similarity.astype(np.float64) @ tilt


def valid_mask(h: np.ndarray, size: int) -> np.ndarray:
    """size x size bool mask of the pixels whose image under `h` lands inside the other size x size view."""
    ys, xs = np.mgrid[0:size, 0:size]
    pts = np.stack((xs.ravel(), ys.ravel()), 1).astype(np.float64)
    return inside(warp_points(h, pts), (size, size), margin=0.5).reshape(size, size)


def photometric(rng: np.random.Generator, rgb: np.ndarray, cfg: PhotometricConfig) -> np.ndarray:
    """Random brightness, contrast, gamma, illumination ramp, blur and noise on a float [0, 1] RGB image."""
    if not cfg.enabled:
        return rgb
    h, w = rgb.shape[:2]
    img = rgb
    if rng.random() < cfg.blur_prob:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(*cfg.blur_sigma))
    img = np.clip(img, 0.0, 1.0) ** rng.uniform(*cfg.gamma)
    mean = img.mean()
    img = (img - mean) * rng.uniform(*cfg.contrast) + mean + rng.uniform(-cfg.brightness, cfg.brightness)
    # a linear illumination ramp in a random direction, as from a lamp or a vignette-free sky gradient
    theta = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = (np.cos(theta) * (xs / max(w - 1, 1) - 0.5) + np.sin(theta) * (ys / max(h - 1, 1) - 0.5)).astype(np.float32)
    img = img * (1.0 + rng.uniform(-cfg.gradient, cfg.gradient) * ramp)[..., None]
    img = img + rng.normal(0.0, rng.uniform(0, cfg.noise_std), img.shape).astype(np.float32)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


class PairDataset(torch.utils.data.Dataset):
    """Pairs (image0, image1, H 0->1, mask0, mask1) from a list of in-memory photos; `len` is virtual."""

    def __init__(self, photos: list[np.ndarray], cfg: DataConfig, seed: int, length: int = 10**9):
        if cfg.size % 32:
            raise ValueError(f"data.size must be a multiple of 32, got {cfg.size}")
        self.photos, self.cfg, self.seed, self.length = photos, cfg, seed, length

    def __len__(self) -> int:
        return self.length

    def crop_transform(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """Homography from photo pixels to a size x size crop of a random square region (scaled)."""
        ph, pw = shape[:2]
        side = rng.uniform(*self.cfg.crop_range) * min(ph, pw)
        x0, y0 = rng.uniform(0, pw - side), rng.uniform(0, ph - side)
        s = (self.cfg.size - 1) / (side - 1)
        return np.array([[s, 0, -s * x0], [0, s, -s * y0], [0, 0, 1]], np.float64)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index])
        photo = self.photos[int(rng.integers(len(self.photos)))]
        size = self.cfg.size
        crop = self.crop_transform(rng, photo.shape)
        h01 = random_homography(rng, size, self.cfg.warp)
        src = photo.astype(np.float32) / 255.0
        views = [
            cv2.warpPerspective(src, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            for m in (crop, h01 @ crop)
        ]
        views = [photometric(rng, v, self.cfg.photometric) for v in views]
        return {
            "image0": torch.from_numpy(views[0]).permute(2, 0, 1).contiguous(),
            "image1": torch.from_numpy(views[1]).permute(2, 0, 1).contiguous(),
            "H": torch.from_numpy(h01).float(),
            "mask0": torch.from_numpy(valid_mask(h01, size)),
            "mask1": torch.from_numpy(valid_mask(np.linalg.inv(h01), size)),
        }


def load_photos(cfg: DataConfig) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(training photos, held-out validation photos) from the configured folder."""
    paths = list_images(cfg.folder)
    if len(paths) <= cfg.val_images:
        raise ValueError(f"{cfg.folder} has {len(paths)} images; need more than val_images={cfg.val_images}")
    photos = [read_rgb(p, cfg.cache_side) for p in paths]
    cut = len(photos) - cfg.val_images
    return photos[:cut], photos[cut:]


def collate(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([s[k] for s in samples]) for k in samples[0]}
