"""Key.Net on its own terms, and the descriptor its keypoints get (issue 11).

    ALIKE_ROS_SHARED=../shared python research/keynet_choices.py [--keynet W] [--describer W]
        [--top-k 1000] [--limit 16] [--data data/eval]

1. Repeatability as Key.Net's paper defines it: keypoints of both images inside the common area, paired one
   to one (mutual nearest within 3 px, locations only: the paper's "L"), over the smaller of the two counts;
   the top `--top-k` of each detector. On the synthetic viewpoint and illumination pairs of the held-out photos
   (`evaluation.synthetic`, 480 px), against OpenCV SIFT's strongest `--top-k` and our alike-t.
2. The descriptor at Key.Net's keypoints: the sift-residual descriptor with upright SIFT computed at keypoint
   diameters 4, 8 and 16 px, or alike-t's descriptor sampled there; F-RANSAC inliers per pair on the video and
   MMA@3 on the synthetic pairs, beside SIFT and sift-residual at SIFT's own keypoints.

Key.Net runs with the package's default NMS window (5), and once more with NMS 15, its paper's evaluation
window, which at 384x288 leaves fewer than `--top-k` peaks.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

import cv2
import numpy as np
import torch

from alike_ros import extractors
from alike_ros.detection.dkd import DetectorConfig
from alike_ros.evaluation.benchmarks import Timer, evaluate_video, video_frames
from alike_ros.evaluation.methods import Detections, ExtractorMethod, Method, SiftMethod
from alike_ros.evaluation.metrics import match_errors
from alike_ros.evaluation.synthetic import synthetic_pairs
from alike_ros.extractor import Extractor
from alike_ros.extractors.keynet import KeyNetExtractor, load_keynet
from alike_ros.geometry import inside, warp_points
from alike_ros.model.residual import load_residual
from alike_ros.model.weights import bundled_weights_path


def keynet_repeatability(kp0: np.ndarray, kp1: np.ndarray, h: np.ndarray, size: tuple[int, int], px: float = 3.0):
    """Key.Net's repeatability (locations only): one-to-one correspondences within px / the smaller count.
    Both images have `size` (the synthetic pairs do)."""
    shared0 = kp0[inside(warp_points(h, kp0), size)]
    shared1 = kp1[inside(warp_points(np.linalg.inv(h), kp1), size)]
    if len(shared0) == 0 or len(shared1) == 0:
        return 0.0
    dist = np.linalg.norm(warp_points(h, shared0)[:, None] - shared1[None], axis=2)
    nn01, nn10 = dist.argmin(1), dist.argmin(0)
    rows = np.arange(len(shared0))
    mutual = (nn10[nn01] == rows) & (dist[rows, nn01] <= px)
    return float(mutual.sum() / min(len(shared0), len(shared1)))


class KeyNetWithAlike(Method):
    """Key.Net's keypoints described by alike-t's descriptor map sampled there."""

    def __init__(self, keynet: KeyNetExtractor, alike: Extractor):
        self.name, self.keynet, self.alike = "Key.Net + alike-t descriptor", keynet, alike

    @torch.inference_mode()
    def detect(self, image: np.ndarray) -> Detections:
        points = self.keynet(image).keypoints
        _, tensor, (h, w) = self.alike._prepare(image, "rgb", 0)
        ((_, describe),) = self.alike._network(tensor, h, w)
        return Detections(points, describe(torch.from_numpy(points)).numpy())


class Wrapped(Method):
    def __init__(self, name: str, extractor):
        self.name, self.extractor = name, extractor

    def detect(self, image: np.ndarray) -> Detections:
        f = self.extractor(image)
        return Detections(f.keypoints, f.descriptors)


def main() -> None:
    shared = Path(os.environ.get("ALIKE_ROS_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keynet", default=None, help="Key.Net weights (default: bundled)")
    p.add_argument("--describer", default=None, help="sift-residual weights (default: bundled)")
    p.add_argument("--photos", type=Path, default=shared / "data" / "photos" / "eval")
    p.add_argument("--data", type=Path, default=Path("data/eval"))
    p.add_argument("--top-k", type=int, default=1000)
    p.add_argument("--limit", type=int, default=16)
    args = p.parse_args()
    torch.set_num_threads(2)
    k = args.top_k
    keynet_net = load_keynet(args.keynet or bundled_weights_path("keynet"))
    describer = load_residual(args.describer or bundled_weights_path("sift-residual"))
    budget = DetectorConfig(top_k=k, score_threshold=0.0, max_keypoints=k)
    options = extractors.Options(device="cpu", detector=budget)
    nms15 = extractors.Options(device="cpu", detector=dataclasses.replace(budget, window_size=15))
    alike = Extractor("alike-t", device="cpu", detector=budget)
    sift = SiftMethod()
    sift.sift = cv2.SIFT_create(nfeatures=k)
    methods: list[Method] = [
        sift,
        ExtractorMethod("sift-residual", "sift-residual", args.describer, top_k=k),
        *(
            Wrapped(f"Key.Net + sift-residual @ {s:g} px", KeyNetExtractor(keynet_net, describer, options, s))
            for s in (4.0, 8.0, 16.0)
        ),
        Wrapped("Key.Net, NMS 15, + sift-residual @ 4 px", KeyNetExtractor(keynet_net, describer, nms15)),
        KeyNetWithAlike(KeyNetExtractor(keynet_net, describer, options), alike),
        ExtractorMethod("alike-t (ours)", "alike-t", None, top_k=k),
    ]
    pairs = [pair for _, ps in synthetic_pairs(args.photos, limit=args.limit) for pair in ps]
    frames = video_frames(args.data, step=4, limit=20)
    print("| method | Key.Net repeatability, v | i | MMA@3 v | i | video F inliers | inlier ratio % | ms/img |")
    print("|---|---|---|---|---|---|---|---|")
    for m in methods:
        timer = Timer()
        rep, mma = {"v": [], "i": []}, {"v": [], "i": []}
        for pair in pairs:
            d0, d1 = timer.detect(m, pair.image0), timer.detect(m, pair.image1)
            rep[pair.kind].append(
                keynet_repeatability(d0.keypoints, d1.keypoints, pair.homography, pair.image1.shape[:2])
            )
            err = match_errors(d0.keypoints, d1.keypoints, m.match(d0, d1), pair.homography)
            mma[pair.kind].append(float((err <= 3).mean()) if len(err) else 0.0)
        video = evaluate_video(m, frames, timer) if frames else None
        cells = [np.mean(rep["v"]), np.mean(rep["i"]), np.mean(mma["v"]), np.mean(mma["i"])]
        tail = f"{video.inliers:.0f} | {100 * video.inlier_ratio:.1f}" if video else "– | –"
        print(
            f"| {m.name} | " + " | ".join(f"{100 * c:.1f}" for c in cells) + f" | {tail} | {timer.mean:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
