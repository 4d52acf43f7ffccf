"""Training and validation pairs with real viewpoint change: crops of two calibrated views of a Strecha scene
(`strecha`), whose ground truth is their cameras and depth maps (`pair_geometry.DepthPair`), mixed with the
synthetic homography pairs of `data`.

Crop b is placed so that a point both views see lands where it does in crop a, at the scale it has there (from
the two depths and focal lengths), then zoomed and rotated at random: the network sees the scenes' real parallax,
occlusion and non-planar surfaces, not the capture's scale changes alone. Every crop is an affine map of the photo,
folded into the crop's K, so the ground truth stays exact. A sample is a pure function of (seed, index).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from .data import PhotometricConfig, photometric
from .pair_geometry import nearest
from .strecha import CorrespondenceConfig, Scene, building, load_scene, relative_pose


@dataclass
class RealConfig:
    """Real pairs for training (`share` > 0) and validation (`val_scenes`); empty by default."""

    folder: str = "../shared/data/realgeo/strecha"
    train_scenes: tuple[str, ...] = ()
    val_scenes: tuple[str, ...] = ()
    share: float = 0.0  # fraction of the training micro-batches made of real pairs, the rest homography pairs
    cache_dir: str = "runs/cache/strecha"  # depth maps, built once (minutes) per scene and correspondence setting
    max_gap: int = 2  # pairs of views at most this far apart in the scene's capture order
    min_covisible: int = 200  # fewer depth points of view a consistently seen in view b: not a pair
    crop_range: tuple[float, float] = (0.3, 0.9)  # crop a's side as a fraction of the photo's shorter side
    zoom_range: tuple[float, float] = (0.8, 1.25)  # log-uniform scale of crop b beyond the scene's own
    max_rotation_deg: float = 15.0  # in-plane rotation of crop b (the captures are upright)
    max_shift: float = 0.1  # of the crop side: where the common point lands in crop b, beyond crop a's place
    depth_tolerance: float = 0.03  # the other view's depth must agree this closely (else occluded: no ground truth)
    correspondences: CorrespondenceConfig = field(default_factory=CorrespondenceConfig)
    val_pairs: int = 12
    val_width: int = 512  # validation views: the whole photos, resized to this width and a height
    val_height: int = 352  # (multiples of 32; K absorbs the small change of aspect)
    val_top_k: int = 1000
    val_epipolar_px: float = 2.0  # a validation match is right within this distance of its epipolar line
    val_gt_px: float = 3.0  # or within this distance of its ground truth, where the depth maps know it

    def __post_init__(self) -> None:
        trained = {building(s) for s in self.train_scenes}
        shared = sorted(s for s in self.val_scenes if building(s) in trained)
        if shared:
            raise ValueError(f"real.val_scenes {shared} show buildings that real.train_scenes train on")


@dataclass
class Covisible:
    """One ordered pair of views of a scene and the depth points of view a that view b sees."""

    scene: Scene
    a: int
    b: int
    points_a: np.ndarray  # N x 2
    points_b: np.ndarray  # N x 2
    magnification: np.ndarray  # N: size in view b / size in view a, locally


def covisible(scene: Scene, a: int, b: int, tolerance: float) -> Covisible:
    cam_a, cam_b = scene.cameras[a], scene.cameras[b]
    pa, za = scene.points[a].astype(np.float64), scene.point_depths[a].astype(np.float64)
    world = cam_a.R @ (np.c_[pa, np.ones(len(pa))] @ np.linalg.inv(cam_a.K).T * za[:, None]).T
    pb, zb = cam_b.project(world.T + cam_a.C)
    seen = nearest(torch.from_numpy(scene.depths[b]), torch.from_numpy(pb).float()).double().numpy()
    ok = (zb > 0) & (np.abs(seen - zb) <= tolerance * zb)
    focal_a, focal_b = np.sqrt(np.linalg.det(cam_a.K[:2, :2])), np.sqrt(np.linalg.det(cam_b.K[:2, :2]))
    return Covisible(scene, a, b, pa[ok], pb[ok], (focal_b / zb[ok]) / (focal_a / za[ok]))


def scene_pairs(scene: Scene, cfg: RealConfig, max_gap: int) -> list[Covisible]:
    """Both orders of every pair of views at most `max_gap` apart that share `min_covisible` depth points."""
    pairs = []
    for a in range(len(scene.images)):
        for b in range(max(0, a - max_gap), min(len(scene.images), a + max_gap + 1)):
            if b != a:
                pair = covisible(scene, a, b, cfg.depth_tolerance)
                if len(pair.points_a) >= cfg.min_covisible:
                    pairs.append(pair)
    return pairs


def similarity(scale: float, angle: float, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2 x 3 affine: rotate by `angle` and scale about photo point `src`, which lands on crop pixel `dst`."""
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    m = np.array([[c, -s], [s, c]])
    return np.c_[m, dst - m @ src]


def antialiased(photo: np.ndarray, scale: float) -> np.ndarray:
    """The photo blurred for a reduction by `scale` (< 1), as a camera's optics would: real pairs are often viewed at
    a third of the photo's resolution, where bilinear sampling alone aliases fine texture."""
    if scale >= 1.0:
        return photo
    return cv2.GaussianBlur(photo, (0, 0), 0.5 * np.sqrt(1.0 / scale**2 - 1.0))


def sample(
    pair: Covisible,
    m_a: np.ndarray,
    m_b: np.ndarray,
    size: tuple[int, int],
    rng: np.random.Generator | None,
    photometry: PhotometricConfig,
) -> dict[str, torch.Tensor]:
    """The two views of `pair` through the affine maps m_a, m_b (photo -> view pixels), as a training sample."""
    views, depths, intrinsics = [], [], []
    for m, index in ((m_a, pair.a), (m_b, pair.b)):
        scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
        photo = antialiased(pair.scene.images[index].astype(np.float32) / 255.0, scale)
        view = cv2.warpAffine(photo, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        views.append(photometric(rng, view, photometry) if rng is not None else view)
        depths.append(cv2.warpAffine(pair.scene.depths[index], m, size, flags=cv2.INTER_NEAREST, borderValue=0))
        intrinsics.append(np.r_[m, [[0, 0, 1]]] @ pair.scene.cameras[index].K)
    r, t = relative_pose(pair.scene.cameras[pair.a], pair.scene.cameras[pair.b])
    out = {f"image{i}": torch.from_numpy(v).permute(2, 0, 1).contiguous() for i, v in enumerate(views)}
    out.update({f"depth{i}": torch.from_numpy(d) for i, d in enumerate(depths)})
    out.update({f"K{i}": torch.from_numpy(k).float() for i, k in enumerate(intrinsics)})
    out.update({"R01": torch.from_numpy(r).float(), "t01": torch.from_numpy(t).float()})
    return out


class RealPairDataset(torch.utils.data.Dataset):
    """Random size x size crop pairs of the training scenes' covisible views; `len` is virtual."""

    def __init__(self, pairs: list[Covisible], cfg: RealConfig, size: int, photometry: PhotometricConfig, seed: int):
        if not pairs:
            raise ValueError("no real training pairs: check real.train_scenes and real.min_covisible")
        self.pairs, self.cfg, self.size, self.photometry, self.seed = pairs, cfg, size, photometry, seed

    def __len__(self) -> int:
        return 10**9

    def crops(self, rng: np.random.Generator, pair: Covisible) -> tuple[np.ndarray, np.ndarray]:
        """Affine maps photo a -> crop a and photo b -> crop b around a random covisible point."""
        cfg, size = self.cfg, self.size
        k = int(rng.integers(len(pair.points_a)))
        height, width = pair.scene.images[pair.a].shape[:2]
        side = rng.uniform(*cfg.crop_range) * min(height, width)
        corner = pair.points_a[k] - side / 2 + rng.uniform(-0.25, 0.25, 2) * side
        corner = np.clip(corner, 0, (width - side, height - side))
        scale = (size - 1) / (side - 1)
        m_a = similarity(scale, 0.0, corner, np.zeros(2))
        there = m_a @ np.r_[pair.points_a[k], 1.0]  # where the common point is in crop a
        zoom = np.exp(rng.uniform(*np.log(cfg.zoom_range)))
        angle = np.deg2rad(rng.uniform(-cfg.max_rotation_deg, cfg.max_rotation_deg))
        dst = np.clip(there + rng.uniform(-cfg.max_shift, cfg.max_shift, 2) * size, 0, size - 1)
        m_b = similarity(scale * zoom / pair.magnification[k], angle, pair.points_b[k], dst)
        return m_a, m_b

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index])
        pair = self.pairs[int(rng.integers(len(self.pairs)))]
        return sample(pair, *self.crops(rng, pair), (self.size, self.size), rng, self.photometry)


class MixedPairs(torch.utils.data.Dataset):
    """Homography pairs and real pairs, `share` of them real, chosen per group of `group` consecutive indices (the
    trainer's micro-batch), so a batch is all of one kind and collates into one set of keys."""

    def __init__(
        self, synthetic: torch.utils.data.Dataset, real: torch.utils.data.Dataset, share: float, seed: int, group: int
    ):
        self.synthetic, self.real, self.share, self.seed, self.group = synthetic, real, share, seed, group

    def __len__(self) -> int:
        return 10**9

    def is_real(self, index: int) -> bool:
        return bool(np.random.default_rng([self.seed, 27, index // self.group]).random() < self.share)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return (self.real if self.is_real(index) else self.synthetic)[index]


def validation_pairs(scenes: list[Scene], cfg: RealConfig) -> list[dict[str, torch.Tensor]]:
    """`val_pairs` neighbouring views (gap 1) spread evenly over the held-out scenes, whole photos resized to
    val_width x val_height."""
    pairs = [p for s in scenes for p in scene_pairs(s, cfg, 1) if p.a < p.b]
    if not pairs:
        return []
    chosen = np.linspace(0, len(pairs) - 1, min(cfg.val_pairs, len(pairs))).round().astype(int)
    out = []
    for pair in (pairs[i] for i in chosen):
        maps = []
        for index in (pair.a, pair.b):
            h, w = pair.scene.images[index].shape[:2]
            sx, sy = cfg.val_width / w, cfg.val_height / h
            # resizing keeps the pixel-centre convention: x' = s (x + 0.5) - 0.5
            maps.append(np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5]]))
        out.append(sample(pair, *maps, (cfg.val_width, cfg.val_height), None, PhotometricConfig(enabled=False)))
    return out


@dataclass
class RealData:
    """The configured scenes, loaded (and their depth maps built or read from the cache)."""

    train: list[Covisible]
    val: list[dict[str, torch.Tensor]]

    @classmethod
    def load(cls, cfg: RealConfig) -> RealData:
        def scenes(names: tuple[str, ...]) -> list[Scene]:
            return [load_scene(Path(cfg.folder) / n, cfg.cache_dir, cfg.correspondences) for n in names]

        train = [p for s in scenes(cfg.train_scenes) for p in scene_pairs(s, cfg, cfg.max_gap)] if cfg.share else []
        return cls(train, validation_pairs(scenes(cfg.val_scenes), cfg))
