"""Calibrated multi-view scenes (Strecha et al., CVPR 2008; ../shared/data/realgeo/strecha) as training ground
truth: SIFT matches verified against the epipolar geometry of the known cameras, triangulated, kept where at least
`min_views` views agree on the depth, and interpolated into one semi-dense depth map per image.

A `NNNN.jpg.camera` file holds K (3 rows), a row of zeros, R (3 rows), the camera centre C and the image size; a
world point X projects to K R^T (X - C). Pixels as everywhere in the package: integer = pixel centre.
The depth maps take minutes to build, so they are cached (`load_scene`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial import Delaunay

from ..extractor import read_rgb


@dataclass
class Camera:
    K: np.ndarray  # 3 x 3 intrinsics
    R: np.ndarray  # 3 x 3, camera-to-world rotation
    C: np.ndarray  # 3, camera centre in the world
    size: tuple[int, int]  # (width, height)

    def to_camera(self, world: np.ndarray) -> np.ndarray:
        """N x 3 world points in this camera's coordinates (z = depth)."""
        return (world - self.C) @ self.R

    def project(self, world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixels (N x 2) and depths (N) of N x 3 world points."""
        cam = self.to_camera(world)
        homog = cam @ self.K.T
        with np.errstate(divide="ignore", invalid="ignore"):
            return homog[:, :2] / homog[:, 2:], cam[:, 2]

    def projection_matrix(self) -> np.ndarray:
        return self.K @ np.c_[self.R.T, -self.R.T @ self.C]


def read_camera(path: str | Path) -> Camera:
    rows = [[float(v) for v in line.split()] for line in Path(path).read_text().splitlines() if line.strip()]
    m = np.array(rows[:8], np.float64)
    return Camera(m[0:3], m[4:7], m[7], (int(rows[8][0]), int(rows[8][1])))


def relative_pose(a: Camera, b: Camera) -> tuple[np.ndarray, np.ndarray]:
    """(R, t) taking camera a's coordinates to camera b's: X_b = R X_a + t."""
    return b.R.T @ a.R, b.R.T @ (a.C - b.C)


def skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]], np.float64)


def fundamental(a: Camera, b: Camera) -> np.ndarray:
    """F with x_b^T F x_a = 0 for pixels x_a, x_b of one world point."""
    r, t = relative_pose(a, b)
    return np.linalg.inv(b.K).T @ skew(t) @ r @ np.linalg.inv(a.K)


def epipolar_distance(f: np.ndarray, xa: np.ndarray, xb: np.ndarray) -> np.ndarray:
    """The larger of each pair's two point-to-epipolar-line distances, in pixels."""
    ha, hb = np.c_[xa, np.ones(len(xa))], np.c_[xb, np.ones(len(xb))]
    lb, la = ha @ f.T, hb @ f  # the line of x_a in image b, of x_b in image a
    err = np.abs((hb * lb).sum(1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.maximum(err / np.hypot(lb[:, 0], lb[:, 1]), err / np.hypot(la[:, 0], la[:, 1]))


@dataclass
class CorrespondenceConfig:
    """How the depth maps are built; every field is part of the cache's key."""

    sift_features: int = 8000
    contrast_threshold: float = 0.02  # below OpenCV's 0.04: more points, the geometry rejects the wrong ones
    ratio: float = 0.8  # Lowe's ratio test
    epipolar_px: float = 1.0  # the README measured a median 0.2 px for raw SIFT matches on these cameras
    reprojection_px: float = 1.0  # the triangulated point must reproject this close in both views
    max_gap: int = 3  # each view is matched with the next `max_gap` views of its scene (captures are sequences)
    # a match on the epipolar line can still be wrong (repeated windows): a depth is kept only where at least this
    # many views (the image and min_views - 1 partners) agree on it within depth_tolerance
    min_views: int = 3
    depth_tolerance: float = 0.01
    max_edge_px: float = 24.0  # longer triangles of the interpolation are holes, not surfaces
    max_depth_ratio: float = 1.05  # triangles whose corners' depths differ more straddle a depth edge: holes


def sift_features(rgb: np.ndarray, cfg: CorrespondenceConfig) -> tuple[np.ndarray, np.ndarray]:
    sift = cv2.SIFT_create(nfeatures=cfg.sift_features, contrastThreshold=cfg.contrast_threshold)
    kps, desc = sift.detectAndCompute(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), None)
    return np.array([k.pt for k in kps], np.float64).reshape(-1, 2), desc


def verified_matches(
    kp_a: np.ndarray,
    desc_a: np.ndarray,
    kp_b: np.ndarray,
    desc_b: np.ndarray,
    cam_a: Camera,
    cam_b: Camera,
    cfg: CorrespondenceConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices (i_a, i_b) of ratio-test SIFT matches that satisfy the cameras' epipolar geometry, triangulate in
    front of both cameras and reproject within `reprojection_px` in both views; and their N x 3 world points."""
    empty = (np.zeros(0, int), np.zeros(0, int), np.zeros((0, 3)))
    if desc_a is None or desc_b is None or len(desc_a) < 2 or len(desc_b) < 2:
        return empty
    knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(desc_a, desc_b, k=2)
    pairs = np.array([(m.queryIdx, m.trainIdx) for m, n in knn if m.distance < cfg.ratio * n.distance], int)
    if len(pairs) == 0:
        return empty
    ia, ib = pairs[:, 0], pairs[:, 1]
    ok = epipolar_distance(fundamental(cam_a, cam_b), kp_a[ia], kp_b[ib]) < cfg.epipolar_px
    ia, ib = ia[ok], ib[ok]
    if len(ia) == 0:
        return empty
    homog = cv2.triangulatePoints(cam_a.projection_matrix(), cam_b.projection_matrix(), kp_a[ia].T, kp_b[ib].T)
    with np.errstate(divide="ignore", invalid="ignore"):
        world = (homog[:3] / homog[3]).T
    keep = np.isfinite(world).all(1)
    for cam, kp in ((cam_a, kp_a[ia]), (cam_b, kp_b[ib])):
        px, depth = cam.project(world)
        keep &= (depth > 0) & (np.linalg.norm(px - kp, axis=1) < cfg.reprojection_px)
    return ia[keep], ib[keep], world[keep]


def consistent_depths(
    observations: list[tuple[np.ndarray, np.ndarray]], cfg: CorrespondenceConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Keypoint indices and depths of one image that at least `min_views - 1` partner views agree on: the median
    of (keypoint index, depth) observations, where all of a keypoint's depths lie within `depth_tolerance`."""
    if not observations:
        return np.zeros(0, int), np.zeros(0)
    idx = np.concatenate([o[0] for o in observations])
    depth = np.concatenate([o[1] for o in observations])
    order = np.lexsort((depth, idx))
    idx, depth = idx[order], depth[order]
    starts = np.flatnonzero(np.r_[True, idx[1:] != idx[:-1]])
    counts = np.diff(np.r_[starts, len(idx)])
    lo, hi = depth[starts], depth[starts + counts - 1]  # sorted by depth within each keypoint
    median = np.array([np.median(depth[s : s + c]) for s, c in zip(starts, counts, strict=True)])
    keep = (counts >= cfg.min_views - 1) & (hi <= lo * (1 + cfg.depth_tolerance))
    return idx[starts][keep], median[keep]


def depth_map(points: np.ndarray, depths: np.ndarray, size: tuple[int, int], cfg: CorrespondenceConfig) -> np.ndarray:
    """H x W float32 depth (0 = unknown) from sparse points: inverse depth interpolated linearly over the Delaunay
    triangles of the points (exact on planar triangles, as inverse depth is affine in the pixels of a plane), except
    on triangles with an edge longer than `max_edge_px` or a depth spread above `max_depth_ratio`."""
    width, height = size
    out = np.zeros((height, width), np.float32)
    if len(points) < 3:
        return out
    tri = Delaunay(points)
    corners = points[tri.simplices]  # T x 3 x 2
    edges = np.linalg.norm(corners - np.roll(corners, 1, axis=1), axis=2).max(1)
    dz = depths[tri.simplices]
    good = (edges <= cfg.max_edge_px) & (dz.max(1) <= dz.min(1) * cfg.max_depth_ratio)
    ys, xs = np.mgrid[0:height, 0:width]
    grid = np.stack((xs.ravel(), ys.ravel()), 1).astype(np.float64)
    simplex = tri.find_simplex(grid)
    hit = simplex >= 0
    hit[hit] = good[simplex[hit]]
    s = simplex[hit]
    transform = tri.transform[s]  # barycentric coordinates: T^-1 (x - r)
    bary = np.einsum("nij,nj->ni", transform[:, :2], grid[hit] - transform[:, 2])
    weights = np.c_[bary, 1 - bary.sum(1)]
    inverse = (weights / dz[s]).sum(1)
    out.ravel()[np.flatnonzero(hit)] = (1.0 / inverse).astype(np.float32)
    return out


@dataclass
class Scene:
    """One calibrated scene: images (RGB uint8) in name order, their cameras, semi-dense depth maps and the sparse
    multi-view-consistent points the maps were built from (pixels and depths per image)."""

    name: str
    images: list[np.ndarray]
    cameras: list[Camera]
    depths: list[np.ndarray]
    points: list[np.ndarray]
    point_depths: list[np.ndarray]


def building(scene: str) -> str:
    """The building a scene shows: castle-P19 and castle-P30 are views of one castle, Herz-Jesus-P8 and -P25 of one
    church, so a held-out building keeps all its scenes out of training."""
    return scene.rsplit("-P", 1)[0]


def build_depths(
    images: list[np.ndarray], cameras: list[Camera], cfg: CorrespondenceConfig
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """(depth maps, points, point depths) of every image, from verified matches with its `max_gap` neighbours on
    either side."""
    feats = [sift_features(img, cfg) for img in images]
    observed: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in images]
    for i in range(len(images)):
        for j in range(i + 1, min(len(images), i + 1 + cfg.max_gap)):
            ia, ib, world = verified_matches(*feats[i], *feats[j], cameras[i], cameras[j], cfg)
            observed[i].append((ia, cameras[i].to_camera(world)[:, 2]))
            observed[j].append((ib, cameras[j].to_camera(world)[:, 2]))
    maps, points, point_depths = [], [], []
    for (kp, _), obs, cam in zip(feats, observed, cameras, strict=True):
        idx, depth = consistent_depths(obs, cfg)
        maps.append(depth_map(kp[idx], depth, cam.size, cfg))
        points.append(kp[idx].astype(np.float32))
        point_depths.append(depth.astype(np.float32))
    return maps, points, point_depths


def cache_key(cfg: CorrespondenceConfig) -> str:
    return hashlib.sha1(json.dumps(dataclasses.asdict(cfg), sort_keys=True).encode()).hexdigest()[:10]


def load_scene(folder: str | Path, cache_dir: str | Path, cfg: CorrespondenceConfig) -> Scene:
    """A scene folder's images and cameras, with its depth maps built once and cached as
    `cache_dir/<scene>-<key of cfg>.npz`."""
    folder = Path(folder)
    paths = sorted(folder.glob("*.jpg"))
    if not paths:
        raise FileNotFoundError(f"no images in {folder}")
    images = [read_rgb(p) for p in paths]
    cameras = [read_camera(f"{p}.camera") for p in paths]
    for p, img, cam in zip(paths, images, cameras, strict=True):
        if (img.shape[1], img.shape[0]) != cam.size:
            raise ValueError(f"{p} is {img.shape[1]}x{img.shape[0]}, its camera says {cam.size[0]}x{cam.size[1]}")
    cache = Path(cache_dir) / f"{folder.name}-{cache_key(cfg)}.npz"
    if cache.exists():
        with np.load(cache) as z:
            n = len(paths)
            maps = [z[f"depth{i}"] for i in range(n)]
            points = [z[f"points{i}"] for i in range(n)]
            point_depths = [z[f"point_depths{i}"] for i in range(n)]
    else:
        maps, points, point_depths = build_depths(images, cameras, cfg)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        arrays = {f"depth{i}": m for i, m in enumerate(maps)}
        arrays.update({f"points{i}": p for i, p in enumerate(points)})
        arrays.update({f"point_depths{i}": d for i, d in enumerate(point_depths)})
        np.savez_compressed(tmp, **arrays)
        tmp.replace(cache)
    return Scene(folder.name, images, cameras, maps, points, point_depths)
