"""`output.descriptor_type`: message size and matching cost of uint8 descriptors against float32.

    python benchmarks/bench_descriptor_type.py [--photos DIR] [--viewpoint 2] [--illumination 2] [--threads 2]

Two sets of image pairs with ground-truth homographies, alike-t (bundled weights) with the node's default
detector settings (score threshold 0.2, at most 2000 keypoints) on the CPU:
- photos: each held-out photo (../shared/data/photos/eval, longer side 640) against synthetic warps of it
  (`alike_ros.evaluation.synthetic`: viewpoint-like and illumination-like);
- sample: consecutive frames of `bag make-sample` (320x240, the camera moving over a photograph).
Each frame goes through the real `features` message: encoded with float32 and with uint8 descriptors, the
serialised CDR size counted, decoded with `decode_features`. Both frames of a pair are matched with the
node's matcher settings (mutual nearest neighbours, min_similarity 0.8) once on the float32 and once on the
decoded uint8 descriptors; a match is correct when it lies within 3 px of the ground truth.

The uint8 form scales each descriptor so its largest component is +-127 (see alike_ros/ros/messages.py). For
comparison, the same figures for one fixed scale s for every descriptor, q = clip(round(s d) + 128, 0, 255),
decoded as (q - 128) / |q - 128|: s = 127 covers any unit vector, s = 254 covers components up to 0.5.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from rclpy.serialization import serialize_message
from sections import machine
from std_msgs.msg import Header

from alike_ros.bag.sample import SampleConfig
from alike_ros.evaluation.metrics import match_errors
from alike_ros.evaluation.synthetic import synthetic_pairs
from alike_ros.extractor import Extractor, Features
from alike_ros.matching.matcher import Matcher, Matches
from alike_ros.matching.tracker import TrackedFrame
from alike_ros.pipeline import PipelineConfig
from alike_ros.ros.messages import decode_features, encode_features, uint8_cosine_error_bound
from alike_ros.scene import homography, load_photo

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "data" / "photos" / "eval"
TYPES = ("float32", "uint8")
FIXED_SCALES = (127.0, 254.0)  # the alternatives to a per-descriptor scale
CORRECT_PX = 3.0


def fixed_scale(descriptors: np.ndarray, scale: float) -> np.ndarray:
    """Quantised with one scale for all descriptors and decoded (for comparison only)."""
    x = np.clip(np.rint(descriptors * scale), -128, 127)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def photo_pairs(photos: Path, viewpoint: int, illumination: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(RGB image0, RGB image1, H image0 -> image1) for every synthetic pair of every photo."""
    return [
        (p.image0, p.image1, p.homography)
        for _, pairs in synthetic_pairs(photos, 640, viewpoint, illumination)
        for p in pairs
    ]


def sample_pairs() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Consecutive frames of the default `bag make-sample` camera (RGB) and the motion H_k H_j^-1 between them."""
    config = SampleConfig()
    photo = cv2.cvtColor(load_photo(), cv2.COLOR_BGR2RGB)
    size = (config.height, config.width)
    hs = [homography(k / config.period, 0, photo.shape[:2], size) for k in range(config.frames)]
    frames = [cv2.warpPerspective(photo, h, (config.width, config.height), flags=cv2.INTER_LINEAR) for h in hs]
    return [(frames[k - 1], frames[k], hs[k] @ np.linalg.inv(hs[k - 1])) for k in range(1, config.frames)]


def through_messages(features: Features) -> tuple[dict[str, int], dict[str, np.ndarray]]:
    """Serialised `features` message size and decoded descriptors, per descriptor type."""
    none = Matches(np.zeros((0, 2), np.int64), np.zeros(0, np.float32))
    frame = TrackedFrame(features, np.arange(len(features), dtype=np.uint32), np.ones(len(features)), none, None)
    sizes, descriptors = {}, {}
    for kind in TYPES:
        msg = encode_features(Header(frame_id="camera"), frame, kind)
        sizes[kind] = len(serialize_message(msg))
        descriptors[kind] = decode_features(msg).descriptors
    return sizes, descriptors


def run(name: str, pairs, extractor: Extractor, matcher: Matcher) -> dict:
    kinds = (*TYPES, *(f"fixed {s:g}" for s in FIXED_SCALES))
    sizes = {k: [] for k in TYPES}
    keypoints, peaks = [], []
    cosine_errors = {k: [] for k in kinds[1:]}
    matches = {k: 0 for k in kinds}
    correct = {k: 0 for k in kinds}
    identical = {k: 0 for k in kinds[1:]}
    for image0, image1, h in pairs:
        feats, decoded = [], []
        for image in (image0, image1):
            f = extractor(image, color="rgb")
            size, desc = through_messages(f)
            for k in TYPES:
                sizes[k].append(size[k])
            np.testing.assert_array_equal(desc["float32"], f.descriptors)  # float32 travels exactly
            for scale in FIXED_SCALES:
                desc[f"fixed {scale:g}"] = fixed_scale(f.descriptors, scale)
            for k in kinds[1:]:
                cosine_errors[k].append(1 - (desc["float32"].astype(np.float64) * desc[k]).sum(axis=1))
            keypoints.append(len(f))
            peaks.append(np.abs(f.descriptors).max(axis=1))
            feats.append(f)
            decoded.append(desc)
        found = {}
        for k in kinds:
            m = matcher(decoded[0][k], decoded[1][k])
            found[k] = {tuple(ij) for ij in m.indices.tolist()}
            matches[k] += len(m)
            correct[k] += int((match_errors(feats[0].keypoints, feats[1].keypoints, m.indices, h) < CORRECT_PX).sum())
        for k in kinds[1:]:
            identical[k] += len(found["float32"] & found[k])
    errors = {k: np.concatenate(v) for k, v in cosine_errors.items()}
    return {
        "set": name,
        "pairs": len(pairs),
        "keypoints": (min(keypoints), max(keypoints)),
        "peak": (float(np.median(np.concatenate(peaks))), float(np.concatenate(peaks).max())),
        "bytes": {k: float(np.mean(v)) for k, v in sizes.items()},
        "cos_err_max": {k: float(v.max()) for k, v in errors.items()},
        "cos_err_mean": {k: float(v.mean()) for k, v in errors.items()},
        "matches": matches,
        "identical": identical,
        "correct": correct,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", type=Path, default=PHOTOS)
    p.add_argument("--viewpoint", type=int, default=2, help="viewpoint-like warps per photo")
    p.add_argument("--illumination", type=int, default=2, help="illumination-like warps per photo")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    extractor = Extractor("alike-t", None, "cpu", detector=PipelineConfig().detector)
    matcher = Matcher(PipelineConfig().matcher, "cpu")
    sets = [("sample", sample_pairs())]
    if args.photos.is_dir():
        sets.insert(0, (f"photos ({args.photos.name})", photo_pairs(args.photos, args.viewpoint, args.illumination)))
    else:
        print(f"{args.photos} is absent: the sample bag's frames only")
    results = [run(name, pairs, extractor, matcher) for name, pairs in sets]

    d = extractor.descriptor_dim
    print(f"{machine()}, torch {torch.__version__}, {args.threads} threads, alike-t (D = {d}), node defaults")
    print(f"layout: float32 {16 + 4 * d} B/keypoint, uint8 {16 + d} B/keypoint ({(16 + 4 * d) / (16 + d):.2f}x)")
    print(
        f"at 2000 keypoints: float32 {2000 * (16 + 4 * d):,} B, uint8 {2000 * (16 + d):,} B of point data "
        f"(+ header and field list); uint8 cosine error bound {uint8_cosine_error_bound(d):.2e}"
    )
    print()
    print(
        "| pairs | keypoints/frame | bytes/frame float32 | bytes/frame uint8 | 1 - cos max / mean "
        "| matches float32 / uint8 | identical | correct (3 px) float32 / uint8 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        m, c, same = r["matches"], r["correct"], r["identical"]["uint8"]
        print(
            f"| {r['set']}: {r['pairs']} | {r['keypoints'][0]}-{r['keypoints'][1]} | {r['bytes']['float32']:,.0f} "
            f"| {r['bytes']['uint8']:,.0f} | {r['cos_err_max']['uint8']:.1e} / {r['cos_err_mean']['uint8']:.1e} "
            f"| {m['float32']} / {m['uint8']} | {same} ({same / max(m['float32'], 1):.1%}) "
            f"| {c['float32']} / {c['uint8']} ({c['uint8'] - c['float32']:+d}) |"
        )
    for r in results:
        print(f"{r['set']}: largest |component| of a descriptor: median {r['peak'][0]:.2f}, max {r['peak'][1]:.2f}")
    print("\n| pairs | scheme | 1 - cos max / mean | matches | identical to float32 | correct (3 px) |")
    print("|---|---|---|---|---|---|")
    for r in results:
        for k in r["identical"]:
            name = "per-descriptor scale (uint8)" if k == "uint8" else f"fixed scale {k.split()[1]}"
            same, m, c = r["identical"][k], r["matches"], r["correct"]
            print(
                f"| {r['set']} | {name} | {r['cos_err_max'][k]:.1e} / {r['cos_err_mean'][k]:.1e} | {m[k]} "
                f"| {same / max(m['float32'], 1):.1%} | {c[k]} ({c[k] - c['float32']:+d}) |"
            )
    print(f"\n{time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
