"""Why graf is lost: the causes of issue 14, each measured on held-out data before any CPU hours are spent.

    ALIKE_ROS_SHARED=../shared python research/viewpoint_gap.py [--weights W] [--model alike-t]
        [--photos DIR] [--data data/eval] [--limit 16] [--top-k 1000] [--write EVALUATION.md]

1. *How strong graf's viewpoint change is, against what training shows.* Every homography is summarised by
   its Jacobian over the part of image 0 that image 1 sees: the largest anisotropy (ratio of the singular
   values: a tilted plane is foreshortened in one direction) and the range of local scale (max/min of
   sqrt|det J|: perspective magnifies the near side). Printed for graf1->3, the training warps
   (`training.data.random_homography` at the configured crop size), the evaluation's "v" warps and the
   tilted-plane warps of part 2.
2. *Accuracy against tilt.* A plane seen fronto-parallel, then from a camera rotated about an axis through
   the image centre (in-plane direction random, 2 per photo), for tilts of 0..60 degrees; the held-out
   photos at 480 px. Per method: MMA@3 of mutual nearest neighbours, repeatability@3, correct matches per
   pair, at top-k keypoints. If our lead turns into a deficit as the tilt grows, the training distribution
   is the cause.
3. *Scale.* graf1->3 at 1.0, 0.75 and 0.5 of its size (`--scales`): a network that only saw small crops of downscaled
   photos may lose at graf's native 800x640 for scale alone.
4. *Score calibration.* Share of the NMS peaks (window 5) scoring >= 0.2 on the held-out photos at 640 px.
5. *Field of view at equal zoom.* Training-style pairs (`training.data.PairDataset`: crop, random homography,
   independent photometry) of the held-out photos cached at 1024 px, as squares of 192, 384 and 640 px cut so
   that every side shows the photo at the same zoom (crops of 0.15-0.30 x side / 192 of the shorter side), at
   the training density of 300 keypoints per 192 x 192: a descriptor trained on 192 px crops only had to differ
   from the 37k pixels of such a crop, so if field of view matters, our lead shrinks as the side grows.
6. *Does the score rank the matchable points first?* On graf1->3 and part 5's 640 px pairs, at top-k: the
   share of correct (3 px) mutual-nearest-neighbour matches among the keypoints of image 0 in each quarter of
   its score ranking, best-scored quarter first. A score that ranks well falls from the first quarter to the last.
7. *graf's content or graf's camera?* graf1 -> graf3 against graf1 -> graf1 warped by graf's own homography (and
   by half and three quarters of it: the corners moved that part of the way): the synthetic pairs have graf's
   content and geometry but none of the real second photo's lighting, camera or departures from a plane.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import cv2
import numpy as np
import torch

from alike_ros.detection.dkd import nms_peaks_cpu
from alike_ros.evaluation.benchmarks import graf_pair
from alike_ros.evaluation.methods import ExtractorMethod, SiftMethod
from alike_ros.evaluation.metrics import match_errors, repeatability
from alike_ros.evaluation.synthetic import IMAGE_SUFFIXES, overlap
from alike_ros.extractor import Extractor, read_rgb
from alike_ros.geometry import inside, tilt_homography, warp_points
from alike_ros.model.weights import bundled_weights_path
from alike_ros.training.data import DataConfig, PairDataset, WarpConfig, random_homography

TILTS = (0, 20, 30, 40, 50, 60)
FIELD_SIDES = (192, 384, 640)
DENSITY = 300 / 192**2  # keypoints per pixel in training and validation


def jacobian_stats(h: np.ndarray, size0: tuple[int, int], size1: tuple[int, int]) -> tuple[float, float]:
    """(largest anisotropy, local scale range) of `h` over the pixels of image 0 that land in image 1."""
    hgt, wid = size0
    ys, xs = np.mgrid[0 : hgt : max(1, hgt // 24), 0 : wid : max(1, wid // 24)]
    pts = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64)
    pts = pts[inside(warp_points(h, pts), size1)]
    if len(pts) == 0:
        return float("nan"), float("nan")
    p = np.c_[pts, np.ones(len(pts))] @ h.T
    w = p[:, 2:3]
    # d(x'/w)/d(x, y) = (h[:2, :2] * w - p[:, :2] outer h[2, :2]) / w^2
    jac = (h[None, :2, :2] * w[:, :, None] - p[:, :2, None] * h[None, 2:3, :2]) / (w[:, :, None] ** 2)
    sv = np.linalg.svd(jac, compute_uv=False)
    scale = np.sqrt(sv[:, 0] * sv[:, 1])
    return float((sv[:, 0] / sv[:, 1]).max()), float(scale.max() / scale.min())


def photos(folder: Path, limit: int, side: int) -> list[tuple[str, np.ndarray]]:
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    return [(p.stem, read_rgb(p, side)) for p in paths]


def pair_scores(method, image0: np.ndarray, image1: np.ndarray, h: np.ndarray) -> tuple[float, float, int]:
    """(MMA@3, repeatability@3, correct matches) of one method on one pair."""
    d0, d1 = method.detect(image0), method.detect(image1)
    matches = method.match(d0, d1)
    err = match_errors(d0.keypoints, d1.keypoints, matches, h)
    mma3 = float((err <= 3).mean()) if len(err) else 0.0
    rep = repeatability(d0.keypoints, d1.keypoints, h, image0.shape[:2], image1.shape[:2])
    return mma3, rep, int((err <= 3).sum())


def peak_share(extractor: Extractor, images: list[np.ndarray], threshold: float = 0.2) -> tuple[float, int]:
    """Share of NMS peaks (window 5, border 2 excluded) scoring >= threshold; mean peak count per image."""
    shares, counts = [], []
    for image in images:
        scores = extractor.score_map(image)
        scores = np.ascontiguousarray(scores, np.float32)
        peaks = nms_peaks_cpu(scores, 5).view(np.bool_)
        peaks[:3], peaks[-2:], peaks[:, :3], peaks[:, -2:] = False, False, False, False
        values = scores[peaks]
        shares.append(float((values >= threshold).mean()))
        counts.append(len(values))
    return float(np.mean(shares)), int(np.mean(counts))


def report(label: str, results: dict[str, np.ndarray | tuple[float, ...]]) -> None:
    """One line: the label, then each method's figures."""
    cells = (f"{name}: " + " / ".join(f"{v:.3f}" for v in figures) for name, figures in results.items())
    print(f"{label}: " + " | ".join(cells), flush=True)


def rgb_uint8(view: torch.Tensor) -> np.ndarray:
    """A 3 x H x W float view in [0, 1] as the H x W x 3 uint8 image the extractors take."""
    return (view.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def field_of_view_pairs(images: list[np.ndarray], side: int, count: int) -> list[tuple[np.ndarray, ...]]:
    """`count` (image0, image1, H) training-style pairs of side x side, at the zoom of a 192 px crop of 15-30 %."""
    crop = (0.15 * side / 192, 0.30 * side / 192)
    dataset = PairDataset(images, DataConfig(size=side, cache_side=1024, crop_range=crop), seed=5)
    return [
        (rgb_uint8(p["image0"]), rgb_uint8(p["image1"]), p["H"].double().numpy())
        for p in map(dataset.__getitem__, range(count))
    ]


def correct_by_score_quarter(method: ExtractorMethod, image0: np.ndarray, image1: np.ndarray, h: np.ndarray):
    """(correct, matched) counts of image 0's keypoints in each quarter of its score ranking (best first)."""
    d0, d1 = method.detect(image0), method.detect(image1)  # keypoints come best-scored first
    matches = method.match(d0, d1)
    correct = match_errors(d0.keypoints, d1.keypoints, matches, h) <= 3
    quarter = matches[:, 0] * 4 // max(len(d0.keypoints), 1)
    return np.array([[correct[quarter == q].sum(), (quarter == q).sum()] for q in range(4)])


def partial_homography(h: np.ndarray, size: tuple[int, int], fraction: float) -> np.ndarray:
    """The homography moving the image corners `fraction` of the way to where `h` moves them."""
    height, width = size
    corners = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], np.float64)
    moved = corners + fraction * (warp_points(h, corners) - corners)
    return cv2.getPerspectiveTransform(corners.astype(np.float32), moved.astype(np.float32)).astype(np.float64)


def main() -> None:
    shared = Path(os.environ.get("ALIKE_ROS_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="alike-t")
    parser.add_argument("--weights", default=None, help="ours: this checkpoint instead of the bundled weights")
    parser.add_argument("--photos", type=Path, default=shared / "data" / "photos" / "eval")
    parser.add_argument("--upstream-dir", type=Path, default=shared / "reference" / "weights")
    parser.add_argument("--data", type=Path, default=Path("data/eval"))
    parser.add_argument("--limit", type=int, default=16)
    parser.add_argument("--top-k", type=int, default=1000)
    parser.add_argument("--train-size", type=int, default=192, help="crop side of the training warps")
    parser.add_argument("--tilts", default=",".join(map(str, TILTS)))
    parser.add_argument("--parts", default="1,2,3,4,5,6,7")
    parser.add_argument("--pairs", type=int, default=24, help="part 5: pairs per side")
    parser.add_argument("--scales", default="1.0,0.75,0.5", help="part 3: graf resized by these factors")
    args = parser.parse_args()
    torch.set_num_threads(2)
    parts = set(args.parts.split(","))
    ours = Path(args.weights) if args.weights else bundled_weights_path(args.model)
    methods = [
        ExtractorMethod(f"ours {args.model}", args.model, ours, top_k=args.top_k),
        ExtractorMethod(
            f"upstream {args.model}", args.model, args.upstream_dir / f"{args.model}.pth", top_k=args.top_k
        ),
        SiftMethod(),
    ]
    methods[2].sift = cv2.SIFT_create(nfeatures=args.top_k)
    graf = graf_pair(args.data)
    held_out = photos(args.photos, args.limit, 480)

    if "1" in parts:
        print("## 1. strength of the viewpoint change (largest anisotropy, local scale range)")
        if graf is not None:
            print(f"graf1->3: {jacobian_stats(graf.homography, graf.image0.shape[:2], graf.image1.shape[:2])}")
        rng = np.random.default_rng(0)
        size = args.train_size
        train = np.array(
            [jacobian_stats(random_homography(rng, size, WarpConfig()), (size, size), (size, size)) for _ in range(500)]
        )
        print(
            "training warps: percentiles 50/90/99 of anisotropy",
            np.percentile(train[:, 0], [50, 90, 99]).round(2),
            "scale range",
            np.percentile(train[:, 1], [50, 90, 99]).round(2),
        )
        for tilt in map(float, args.tilts.split(",")):
            stats = jacobian_stats(tilt_homography((360, 480), tilt, 30), (360, 480), (360, 480))
            print(f"tilt {tilt:>4.0f}: {np.round(stats, 2)}")

    if "2" in parts:
        print(f"## 2. accuracy against tilt ({len(held_out)} photos x 2 axes, top-k {args.top_k})")
        print("MMA@3 / rep@3 / correct matches per pair")
        for tilt in map(float, args.tilts.split(",")):
            row = {m.name: [] for m in methods}
            for name, image in held_out:
                rng = np.random.default_rng([sum(map(ord, name)), int(tilt)])
                for axis in rng.uniform(0, 180, 2):
                    size = image.shape[:2]
                    h = tilt_homography(size, tilt, axis)
                    if overlap(h, size) < 0.5:
                        continue
                    warped = cv2.warpPerspective(image, h, (size[1], size[0]), flags=cv2.INTER_LINEAR)
                    for m in methods:
                        row[m.name].append(pair_scores(m, image, warped, h))
            cells = [
                f"{n}: " + " / ".join(f"{v:.3f}" if i < 2 else f"{v:.0f}" for i, v in enumerate(np.mean(r, 0)))
                for n, r in row.items()
            ]
            print(f"tilt {tilt:>4.0f} ({len(row[methods[0].name])} pairs) | " + " | ".join(cells), flush=True)

    if "3" in parts and graf is not None:
        print("## 3. graf1->3 resized: MMA@3 / rep@3 / correct")
        for factor in map(float, args.scales.split(",")):
            s = np.diag([factor, factor, 1.0])
            h = s @ graf.homography @ np.linalg.inv(s)
            im0, im1 = (
                cv2.resize(im, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
                for im in (graf.image0, graf.image1)
            )
            report(f"scale {factor}", {m.name: pair_scores(m, im0, im1, h) for m in methods})

    if "4" in parts:
        print("## 4. share of NMS peaks >= 0.2 on the held-out photos at 640 px (mean share, mean peaks)")
        images = [im for _, im in photos(args.photos, args.limit, 640)]
        for m in methods[:2]:
            print(m.name, peak_share(m.extractor, images))

    if "5" in parts:
        print(f"## 5. field of view at equal zoom ({args.pairs} pairs per side): MMA@3 / rep@3 / correct")
        images = [im for _, im in photos(args.photos, args.limit, 1024)]
        for side in FIELD_SIDES:
            top_k = round(DENSITY * side**2)
            sided = [
                ExtractorMethod(f"ours {args.model}", args.model, ours, top_k=top_k),
                ExtractorMethod(
                    f"upstream {args.model}", args.model, args.upstream_dir / f"{args.model}.pth", top_k=top_k
                ),
            ]
            row = {m.name: [] for m in sided}
            for im0, im1, h in field_of_view_pairs(images, side, args.pairs):
                for m in sided:
                    row[m.name].append(pair_scores(m, im0, im1, h))
            report(f"side {side} (top {top_k})", {n: np.mean(r, 0) for n, r in row.items()})

    if "6" in parts:
        print("## 6. MMA@3 of the matches of image 0's keypoints per quarter of its score ranking, best first")
        images = [im for _, im in photos(args.photos, args.limit, 1024)]
        sets = {"640 px pairs (part 5)": field_of_view_pairs(images, 640, args.pairs)}
        if graf is not None:
            sets["graf1->3"] = [(graf.image0, graf.image1, graf.homography)]
        for label, pairs in sets.items():
            quarters = {m.name: sum(correct_by_score_quarter(m, *pair) for pair in pairs) for m in methods[:2]}
            report(f"{label} (top {args.top_k})", {n: [c / max(k, 1) for c, k in q] for n, q in quarters.items()})

    if "7" in parts and graf is not None:
        print("## 7. graf1->3 against graf1 warped by a part of graf's homography: MMA@3 / rep@3 / correct")
        for fraction in (0.5, 0.75, 1.0):
            h = partial_homography(graf.homography, graf.image0.shape[:2], fraction)
            height, width = graf.image1.shape[:2]
            warped = cv2.warpPerspective(graf.image0, h, (width, height), flags=cv2.INTER_LINEAR)
            report(
                f"graf1 warped by {fraction} of H", {m.name: pair_scores(m, graf.image0, warped, h) for m in methods}
            )
        report("graf3", {m.name: pair_scores(m, graf.image0, graf.image1, graf.homography) for m in methods})


if __name__ == "__main__":
    main()
