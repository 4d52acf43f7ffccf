"""How many correct matches a descriptor could give at a detector's keypoints on the real video (issue 11).

    python research/descriptor_ceiling.py [--methods sift,sift-residual,keynet,alike-t] [--top-k 1000]

The video of `evaluate` (cube.mpeg, 20 frames 4 apart, 384x288), each frame matched with the next by mutual
nearest neighbours, as `evaluate` does. Beside the F-RANSAC inliers it counts *correct* matches: the keypoint of
frame 0, tracked into frame 1 by Lucas-Kanade (kept only where the track returns within 0.5 px), lands within
3 px of its match. The bound is the largest one-to-one matching of tracked keypoints to frame 1's keypoints within
3 px (`metrics.max_correct_matches`): what a perfect descriptor would reach at these keypoints.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

from alike_ros.evaluation import metrics
from alike_ros.evaluation.benchmarks import video_frames
from alike_ros.evaluation.methods import Method, Unavailable, build_methods


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default="sift,sift-residual,keynet,alike-t")
    p.add_argument("--top-k", type=int, default=1000, help="every method's budget, SIFT's nfeatures included")
    p.add_argument("--data", type=Path, default=Path("data/eval"))
    args = p.parse_args()
    torch.set_num_threads(2)
    frames = video_frames(args.data, step=4, limit=20)
    if frames is None:
        raise SystemExit(f"no video under {args.data}: run scripts/fetch_eval_data.sh")
    grays = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    methods = build_methods(args.methods.split(","), "alike-t", None, None, args.top_k, args.top_k)
    print("| method | keypoints / frame | mutual matches | F inliers | correct (3 px) | bound | correct / bound |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for method in methods:
        if isinstance(method, Unavailable):
            print(f"| {method.name} | {method.reason} |||||")
            continue
        rows = np.array(list(pair_counts(method, frames, grays)), float).mean(0)
        keypoints, matches, inliers, correct, bound = rows
        print(
            f"| {method.name} | {keypoints:.0f} | {matches:.0f} | {inliers:.0f} | {correct:.0f} | {bound:.0f} | "
            f"{correct / bound:.3f} |",
            flush=True,
        )


def pair_counts(method: Method, frames: list[np.ndarray], grays: list[np.ndarray]):
    """Per consecutive pair: keypoints of frame 0, mutual matches, F inliers, correct matches, the bound."""
    detections = [method.detect(f) for f in frames]
    for i, (a, b) in enumerate(zip(detections[:-1], detections[1:], strict=True)):
        idx = method.match(a, b)
        inliers, _ = metrics.fundamental_inliers(a.keypoints[idx[:, 0]], b.keypoints[idx[:, 1]])
        truth, trusted = metrics.track(grays[i], grays[i + 1], a.keypoints)
        correct = metrics.correct_matches(truth, trusted, b.keypoints, idx)
        bound = metrics.max_correct_matches(truth, trusted, b.keypoints)
        yield len(a.keypoints), len(idx), inliers, correct, bound


if __name__ == "__main__":
    main()
