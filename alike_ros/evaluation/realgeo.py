"""Real photographs with known geometry (the shared folder `data/realgeo`, whose README describes the sets).

- `hpatches/v_*`: HPatches viewpoint sequences, image 1 against images 2..6 with `H_1_k`;
- `evd/*`: extreme-viewpoint pairs 1.png -> 2.png with `H_1_2`;
- `strecha/<scene>`: calibrated outdoor views (`NNNN.jpg.camera`: K, R camera-to-world, centre C);
- `tum_fr3_long_office`: TUM RGB-D frames with the camera-to-world trajectory in `groundtruth.txt`.

Images are downscaled to a longer side of at most `max_side` (0: native), and every homography and camera
matrix is rescaled with them, so all methods see the same pixels. A set whose folder is absent is skipped with
the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from ..extractor import read_rgb, resized_for
from .metrics import relative_pose, rotation_angle
from .synthetic import Pair

# TUM fr3/long_office_household, as its README gives them (fx, fy, cx, cy; the frames are undistorted)
TUM_CAMERA = np.array([[535.4, 0.0, 320.1], [0.0, 539.2, 247.6], [0.0, 0.0, 1.0]])
TUM_STAMP_GAP_S = 0.1  # a frame takes the nearest ground-truth pose (100 Hz) if one is this close
NEIGHBOURS = (1, 2)  # pose pairs: each view with the next and the one after (views are ordered along the path)
# Herz-Jesus-P25 jumps from one side of the church to the other between views 13 and 14 (82-96 degrees, no
# shared view); every other neighbour pair turns by 61 degrees or less and shares at least 59 SIFT matches that
# agree with its cameras (EVALUATION.md, "Real geometry").
MAX_PAIR_ROTATION_DEG = 70.0


def scaling(original: tuple[int, int], used: tuple[int, int]) -> np.ndarray:
    """3x3 map from pixels of an image of size `original` (height, width) to pixels of its resized copy of size
    `used`: x' = s (x + 0.5) - 0.5, the inverse of `extractor.to_original_pixels`."""
    sx, sy = used[1] / original[1], used[0] / original[0]
    return np.array([[sx, 0.0, (sx - 1) / 2], [0.0, sy, (sy - 1) / 2], [0.0, 0.0, 1.0]])


def _image(path: Path, max_side: int) -> tuple[np.ndarray, np.ndarray]:
    """An image at `max_side` and the map from its file's pixels to the returned image's."""
    full = read_rgb(path)
    image = resized_for(full, max_side)
    return image, scaling(full.shape[:2], image.shape[:2])


def homography_group(folder: Path, max_side: int) -> tuple[np.ndarray, list[Pair]]:
    """Image 1 of `folder` and its pairs with each image k that has an `H_1_k` (mapping image 1 to image k)."""
    reference, s0 = _image(folder / "1.png", max_side)
    pairs = []
    for k in sorted(int(p.name.removeprefix("H_1_")) for p in folder.glob("H_1_*")):
        image, s1 = _image(folder / f"{k}.png", max_side)
        h = s1 @ np.loadtxt(folder / f"H_1_{k}") @ np.linalg.inv(s0)
        pairs.append(Pair(f"{folder.name}/1-{k}", "v", reference, image, h / h[2, 2]))
    return reference, pairs


def hpatches(root: Path, max_side: int) -> list[tuple[np.ndarray, list[Pair]]]:
    """One group per sequence: image 1 and its pairs with images 2..6."""
    return [homography_group(f, max_side) for f in sorted((root / "hpatches").glob("v_*"))]


def evd(root: Path, max_side: int) -> list[tuple[np.ndarray, list[Pair]]]:
    """One group per pair."""
    return [homography_group(f, max_side) for f in sorted((root / "evd").iterdir()) if f.is_dir()]


@dataclass
class View:
    name: str
    image: np.ndarray  # H x W x 3 RGB uint8
    camera: np.ndarray  # 3x3 K, in pixels of `image`
    rotation: np.ndarray  # 3x3, camera to world
    centre: np.ndarray  # 3, world


@dataclass
class PoseScene:
    """Views of one scene and the pairs (indices into `views`) whose relative pose is estimated."""

    name: str
    views: list[View]
    pairs: list[tuple[int, int]] = field(default_factory=list)

    def truth(self, i: int, j: int) -> tuple[np.ndarray, np.ndarray]:
        """(R, t) from view i's camera frame to view j's."""
        a, b = self.views[i], self.views[j]
        return relative_pose(a.rotation, a.centre, b.rotation, b.centre)


def neighbour_pairs(rotations: list[np.ndarray]) -> list[tuple[int, int]]:
    """Each view (by its camera's rotation) with its NEIGHBOURS that turn by at most MAX_PAIR_ROTATION_DEG from it."""
    pairs = [(i, i + d) for d in NEIGHBOURS for i in range(len(rotations) - d)]
    return [(i, j) for i, j in pairs if rotation_angle(rotations[i].T @ rotations[j]) <= MAX_PAIR_ROTATION_DEG]


def strecha_camera(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """K, R (camera to world) and C of a Strecha `.camera` file (K, a row of zeros, R, C, then the image size)."""
    rows = np.array([[float(v) for v in line.split()] for line in path.read_text().splitlines()[:8]])
    return rows[0:3], rows[4:7], rows[7]


def strecha(root: Path, max_side: int) -> list[PoseScene]:
    scenes = []
    for folder in sorted(p for p in (root / "strecha").iterdir() if p.is_dir()):
        views = []
        for path in sorted(folder.glob("*.jpg")):
            image, s = _image(path, max_side)
            k, r, c = strecha_camera(path.with_name(path.name + ".camera"))
            views.append(View(path.stem, image, s @ k, r, c))
        scenes.append(PoseScene(folder.name, views, neighbour_pairs([v.rotation for v in views])))
    return scenes


def tum_poses(groundtruth: Path, stamps: list[float]) -> list[tuple[np.ndarray, np.ndarray] | None]:
    """Camera-to-world (R, C) at each stamp from a TUM trajectory (time tx ty tz qx qy qz qw): the nearest pose,
    None where none is within TUM_STAMP_GAP_S."""
    trajectory = np.loadtxt(groundtruth, comments="#")
    poses = []
    for stamp in stamps:
        nearest = int(np.argmin(np.abs(trajectory[:, 0] - stamp)))
        row = trajectory[nearest]
        ok = abs(row[0] - stamp) <= TUM_STAMP_GAP_S
        poses.append((Rotation.from_quat(row[4:8]).as_matrix(), row[1:4]) if ok else None)
    return poses


def tum(root: Path, max_side: int) -> list[PoseScene]:
    """The frames (named by their stamp) with a ground-truth pose, as one scene."""
    folder = root / "tum_fr3_long_office"
    paths = sorted((folder / "rgb").glob("*.png"), key=lambda p: float(p.stem))
    views = []
    for path, pose in zip(paths, tum_poses(folder / "groundtruth.txt", [float(p.stem) for p in paths]), strict=True):
        if pose is not None:
            image, s = _image(path, max_side)
            views.append(View(path.stem, image, s @ TUM_CAMERA, *pose))
    return [PoseScene(folder.name, views, neighbour_pairs([v.rotation for v in views]))]


@dataclass
class RealSets:
    """The sets found: homography groups by set, pose scenes by set, and why any set is missing."""

    homographies: dict[str, list[tuple[np.ndarray, list[Pair]]]] = field(default_factory=dict)
    poses: dict[str, list[PoseScene]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


HOMOGRAPHY_SETS = {"hpatches": hpatches, "evd": evd}
TITLES = {
    "hpatches": "HPatches viewpoint sequences v_churchill, v_dogman, v_wormhole",
    "evd": "EVD extreme viewpoint",
    "strecha": "Strecha, neighbouring views of 6 scenes",
    "tum_fr3_long_office": "TUM fr3/long_office_household, neighbouring frames 1-2 s apart",
}
POSE_SETS = {"strecha": strecha, "tum_fr3_long_office": tum}


def load(root: Path | None, max_side: int, why_absent: str) -> RealSets:
    """Every set of HOMOGRAPHY_SETS and POSE_SETS under `root`; `why_absent` says how to give `root` when it is
    None or absent."""
    sets = RealSets()
    if root is None or not root.is_dir():
        sets.skipped.append(f"realgeo: {'no folder given' if root is None else f'{root} is absent'} ({why_absent})")
        return sets
    for found, loaders in ((sets.homographies, HOMOGRAPHY_SETS), (sets.poses, POSE_SETS)):
        for name, loader in loaders.items():
            if (root / name).is_dir():
                found[name] = loader(root, max_side)
            else:
                sets.skipped.append(f"realgeo {name}: {root / name} is absent")
    return sets
