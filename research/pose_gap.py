"""What costs keynet, mdnet and sift-residual their Strecha poses against SIFT (issue 27, part 3)?

    ALIKE_ROS_SHARED=../shared PYTHONPATH=. python research/pose_gap.py --variants sift,keynet-u1,keynet-u2 \
        [--top-k -1] [--sets strecha,tum_fr3_long_office,hpatches] [--out runs/pose_gap] [--seeds 1,2,3] \
        [--weights W]
    ... --compare keynet-u2,sift       # the paired bootstrap of two saved variants

Each variant is one model with one change at inference (the bundled weights, or `--weights`), scored with
`evaluate`'s real-geometry protocol (the same images, mutual nearest neighbours, the same seeded RANSAC):
pose AUC@5/10/20 and inliers on the pose sets, MMA@1/3 on HPatches, and how far the matches lying within 4 px of
their true epipolar lines are from them (the points' precision). Variants:

- `<model>`: the protocol's settings (threshold 0.2, at most 5000 points; `--top-k K`: the K strongest);
- `<model>-t<T>`: the soft-argmax temperature T instead of 0.1; `<model>-w<W>`: NMS/refinement window W;
- `<model>-quad`: the sub-pixel offset of a quadratic fitted to the 3x3 scores around each peak (SIFT's
  refinement) instead of the soft-argmax;
- `keynet-s<S>`: keynet's points described at SIFT diameter S px instead of 4;
- `<model>-m<M>`: the network sees the image downscaled to a longer side of M px (keypoints mapped back);
- `<model>-csp<W>`: every keypoint moved by `cv2.cornerSubPix` in a (2W+1)^2 window (back where it moves
  more than 1.5 px), descriptors as they were;
- `keynet-u<F>`: Key.Net's response on the image upscaled F times (`detector.upscale`; 1: the native size;
  keynet's other variants run at the default upscale, which was 1 when the research log's native rows were taken);
- `<model>-x<F>`: the whole extractor on the image upscaled F times, its keypoints brought back;
- `upstream-alike-X`: upstream's checkpoint of alike-X (any change above applies);
- `sift`: OpenCV SIFT (nfeatures 5000, or K).

Per-pair errors go to `--out/<variant>.json`, so any two variants can be compared pair by pair (`--compare`
prints the paired bootstrap of the AUC@10 difference).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import cv2
import numpy as np
import torch

from alike_ros import extractors
from alike_ros.detection import dkd
from alike_ros.detection.dkd import DetectorConfig
from alike_ros.evaluation import metrics, realgeo
from alike_ros.evaluation.benchmarks import Timer, evaluate_homography_benchmark
from alike_ros.evaluation.methods import MAX_FEATURES, Detections, Method, SiftMethod, shared_folder
from alike_ros.evaluation.pose import pair_error
from alike_ros.extractors.keynet import KeyNetExtractor, load_keynet
from alike_ros.model.residual import load_residual
from alike_ros.model.weights import bundled_weights_path
from alike_ros.training import strecha

SOFT_ARGMAX = dkd.refine


def quadratic_refine(scores: torch.Tensor, peaks: torch.Tensor, cfg: DetectorConfig) -> torch.Tensor:
    """Offsets of the vertex of a separable quadratic through the 3x3 scores around each peak, clipped to half
    a pixel (SIFT's interpolation, one step)."""
    s = scores.numpy()
    x, y = peaks[:, 0].numpy(), peaks[:, 1].numpy()
    c = s[y, x]
    dx = (s[y, x + 1] - s[y, x - 1]) / 2
    dy = (s[y + 1, x] - s[y - 1, x]) / 2
    dxx = s[y, x + 1] - 2 * c + s[y, x - 1]
    dyy = s[y + 1, x] - 2 * c + s[y - 1, x]
    dxy = (s[y + 1, x + 1] - s[y + 1, x - 1] - s[y - 1, x + 1] + s[y - 1, x - 1]) / 4
    det = dxx * dyy - dxy**2
    ok = (det > 1e-12) & (dxx < 0)
    safe = np.where(ok, det, 1.0)
    ox = np.where(ok, -(dyy * dx - dxy * dy) / safe, 0.0)
    oy = np.where(ok, -(dxx * dy - dxy * dx) / safe, 0.0)
    offsets = np.clip(np.stack((ox, oy), 1), -0.5, 0.5)
    return peaks.float() + torch.from_numpy(offsets.astype(np.float32))


class Variant(Method):
    def __init__(self, name: str, top_k: int, weights: str | None = None, selection: str = "top"):
        self.name = name
        base, change = re.fullmatch(r"(.+?)(?:-(t[\d.]+|w\d+|quad|s[\d.]+|m\d+|csp\d|u\d|x\d))?", name).groups()
        self.quad = change == "quad"
        self.corner_window = int(change[3:]) if change and change.startswith("csp") else 0
        self.whole = int(change[1:]) if change and change[0] == "x" else 0
        if base == "sift":
            self.inner = SiftMethod(top_k if top_k > 0 else MAX_FEATURES)
            if selection != "top":  # SIFT's keypoints chosen as the models' are (benchmarks/bench_coverage.py)
                raise ValueError("sift takes --selection top only here")
            return
        settings = {}
        if change and change[0] == "t":
            settings["temperature"] = float(change[1:])
        elif change and change[0] == "w":
            settings["window_size"] = int(change[1:])
        elif change and change[0] == "u":
            settings["upscale"] = int(change[1:])
        detector = (
            DetectorConfig(top_k=top_k, score_threshold=0.0, max_keypoints=top_k, selection=selection, **settings)
            if top_k > 0
            else DetectorConfig(score_threshold=0.2, max_keypoints=MAX_FEATURES, selection="top", **settings)
        )
        max_side = int(change[1:]) if change and change[0] == "m" else 0
        if base.startswith("upstream-"):  # upstream's checkpoint of an ALIKE variant, from ../shared/reference
            base = base.removeprefix("upstream-")
            weights = str(shared_folder("reference", "weights") / f"{base}.pth")
        options = extractors.Options(weights, "cpu", detector=detector, max_side=max_side)
        if base == "keynet" and change and change[0] == "s":
            describer = load_residual(bundled_weights_path("sift-residual"))
            detector_net = load_keynet(weights or bundled_weights_path("keynet"))
            self.extractor = KeyNetExtractor(detector_net, describer, options, float(change[1:]))
        else:
            self.extractor = extractors.build(base, options)
        self.inner = None

    def detect(self, image: np.ndarray) -> Detections:
        if self.inner is not None:
            found = self.inner.detect(image)
        elif self.whole:
            big = cv2.resize(image, None, fx=self.whole, fy=self.whole, interpolation=cv2.INTER_CUBIC)
            f = self.extractor(big, color="rgb")
            found = Detections(((f.keypoints + 0.5) / self.whole - 0.5).astype(np.float32), f.descriptors)
        else:
            dkd.refine = quadratic_refine if self.quad else SOFT_ARGMAX
            try:
                f = self.extractor(image, color="rgb")
            finally:
                dkd.refine = SOFT_ARGMAX
            found = Detections(f.keypoints, f.descriptors)
        if self.corner_window:
            found.keypoints = corner_refined(image, found.keypoints, self.corner_window)
        return found


def corner_refined(image: np.ndarray, points: np.ndarray, window: int, limit: float = 1.5) -> np.ndarray:
    """`cv2.cornerSubPix` on the grey image, (2 window + 1)^2 px; a point it moves further than `limit` px
    (no corner there) stays where it was."""
    if len(points) == 0:
        return points
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_COUNT, 20, 0.01)
    moved = cv2.cornerSubPix(gray, points.astype(np.float32).copy(), (window, window), (-1, -1), criteria)
    far = np.linalg.norm(moved - points, axis=1) > limit
    moved[far] = points[far]
    return moved


def run(variant: Variant, sets: realgeo.RealSets, seeds: list[int]) -> dict:
    out: dict = {"variant": variant.name}
    for name, groups in sets.homographies.items():
        results = evaluate_homography_benchmark(variant, groups, Timer())
        errors = [r.errors for r in results]
        out[name] = {"mma": np.mean([metrics.mma(e, (1, 3)) for e in errors], axis=0).tolist()}
    for name, scenes in sets.poses.items():
        errors: dict[int, list[float]] = {seed: [] for seed in seeds}
        inliers, near = [], []
        for scene in scenes:
            detections = [variant.detect(view.image) for view in scene.views]
            for i, j in scene.pairs:
                a, b = detections[i], detections[j]
                idx = variant.match(a, b)
                distance = epipolar_distance(scene, i, j, a.keypoints[idx[:, 0]], b.keypoints[idx[:, 1]])
                near.append(distance[distance < 4.0])
                for seed in seeds:
                    # OpenCV's RANSAC here draws the same samples whatever the RNG seed: shuffle the matches instead
                    order = np.random.default_rng(seed).permutation(len(idx)) if seed else np.arange(len(idx))
                    e, n = pair_error(scene, i, j, a.keypoints[idx[order, 0]], b.keypoints[idx[order, 1]])
                    errors[seed].append(e)
                    if seed == 0:
                        inliers.append(n)
        out[name] = {
            "auc": metrics.pose_auc(np.array(errors[seeds[0]])).tolist(),
            "errors": errors[seeds[0]],
            "inliers": float(np.mean(inliers)),
            # matches within 4 px of their epipolar lines: how far from them (localisation), and how many
            "near_median_px": float(np.median(np.concatenate(near))),
            "near_within_1px": float(np.mean(np.concatenate(near) < 1.0)),
            "near_per_pair": float(np.mean([len(n) for n in near])),
            "auc10_by_seed": {seed: metrics.pose_auc(np.array(e))[1] for seed, e in errors.items()},
        }
    return out


def epipolar_distance(scene: realgeo.PoseScene, i: int, j: int, p0: np.ndarray, p1: np.ndarray) -> np.ndarray:
    """Symmetric epipolar distance (px, the larger of the two images') of matched pixels under the true pose."""
    r, t = scene.truth(i, j)
    k0, k1 = scene.views[i].camera, scene.views[j].camera
    return strecha.epipolar_distance(np.linalg.inv(k1).T @ strecha.skew(t) @ r @ np.linalg.inv(k0), p0, p1)


def bootstrap(a: list[float], b: list[float], draws: int = 2000) -> tuple[float, float, float]:
    """AUC@10 of a minus b, with the 95 % interval of that difference over pairs resampled together."""
    a_, b_ = np.array(a), np.array(b)
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(a_), (draws, len(a_)))
    diffs = [metrics.pose_auc(a_[p])[1] - metrics.pose_auc(b_[p])[1] for p in picks]
    return (
        float(metrics.pose_auc(a_)[1] - metrics.pose_auc(b_)[1]),
        *np.percentile(diffs, [2.5, 97.5]).tolist(),
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default="")
    p.add_argument("--top-k", type=int, default=-1)
    p.add_argument("--weights", help="weights of the variants' model instead of the bundled ones")
    p.add_argument("--selection", default="top", help="with --top-k: how the budget is spent (top, grid)")
    p.add_argument("--sets", default="strecha,tum_fr3_long_office,hpatches")
    p.add_argument("--out", type=Path, default=Path("runs/pose_gap"))
    p.add_argument(
        "--seeds",
        default="",
        help="shuffles of the matches (1, 2, ...) besides their order: RANSAC noise",
    )
    p.add_argument("--compare", help="A,B: the paired bootstrap of AUC@10, A minus B, from their saved errors")
    args = p.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.compare:
        a, b = (json.loads((args.out / f"{v}.json").read_text()) for v in args.compare.split(","))
        for name in (k for k in a if isinstance(a[k], dict) and "errors" in a[k]):
            d, lo, hi = bootstrap(a[name]["errors"], b[name]["errors"])
            print(f"{name}: AUC@10 {100 * d:+.1f} (95 % {100 * lo:+.1f} .. {100 * hi:+.1f})")
        return
    wanted = set(args.sets.split(","))
    sets = realgeo.load(shared_folder("data", "realgeo"), 1024, "set ALIKE_ROS_SHARED")
    sets.homographies = {k: v for k, v in sets.homographies.items() if k in wanted}
    sets.poses = {k: v for k, v in sets.poses.items() if k in wanted}
    seeds = [0] + [int(s) for s in args.seeds.split(",") if s]
    suffix = (f"@{args.top_k}" if args.top_k > 0 else "") + ("-grid" if args.selection == "grid" else "")
    for name in args.variants.split(","):
        result = run(Variant(name, args.top_k, args.weights, args.selection), sets, seeds)
        (args.out / f"{name}{suffix}.json").write_text(json.dumps(result))
        cells = [f"{name}{suffix}"]
        for key, value in result.items():
            if key == "variant":
                continue
            if "mma" in value:
                cells.append(f"{key} MMA@1/3 {100 * value['mma'][0]:.1f}/{100 * value['mma'][1]:.1f}")
            else:
                auc = " / ".join(f"{100 * v:.1f}" for v in value["auc"])
                cells.append(f"{key} AUC {auc} inl {value['inliers']:.0f}")
                cells.append(
                    f"near {value['near_per_pair']:.0f}/pair median {value['near_median_px']:.2f} px, "
                    f"{100 * value['near_within_1px']:.0f} % < 1 px"
                )
                if len(value["auc10_by_seed"]) > 1:
                    spread = [100 * v for v in value["auc10_by_seed"].values()]
                    cells.append(f"AUC@10 over seeds {min(spread):.1f}..{max(spread):.1f} mean {np.mean(spread):.1f}")
        print(" | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
