"""Accuracy cost of the fp16 option, measured on the CPU by running the same network in float16.

    python research/half_precision.py [--models alike-t,alike-n]

`half=True` is a CUDA option; the CPU has float16 convolutions too (slow, but the arithmetic is IEEE
half), so the outputs of an fp32 and an fp16 run of the same frame are compared here. cuDNN may choose
other accumulation orders, so this estimates rather than reproduces the GPU figure.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from alike_ros.detection.dkd import DetectorConfig
from alike_ros.extractor import Extractor

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_extractor import test_frames, weights_for  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="alike-t,alike-n")
    args = p.parse_args()
    print("| model | keypoints within 0.01 px | within 0.1 px | within 1 px | descriptor cosine min / mean |")
    print("|---|---|---|---|---|")
    for model in args.models.split(","):
        extractor = Extractor(model, weights_for(model), "cpu", detector=DetectorConfig(top_k=1000, score_threshold=0))
        reference = [extractor(frame, color="bgr") for frame in test_frames()]
        extractor.net = extractor.net.half()  # what half=True does on CUDA, emulated on the CPU
        extractor.half = True
        dists, cosines = [], []
        for frame, ref in zip(test_frames(), reference, strict=True):
            out = extractor(frame, color="bgr")
            # double: float32 cdist goes through a matmul and is off by ~0.05 px on identical points
            pair = torch.from_numpy(ref.keypoints).double(), torch.from_numpy(out.keypoints).double()
            d, idx = torch.cdist(*pair).min(dim=1)
            dists.append(d.numpy())
            close = d.numpy() < 0.1
            cosines.append((ref.descriptors[close] * out.descriptors[idx.numpy()[close]]).sum(axis=1))
        d, c = np.concatenate(dists), np.concatenate(cosines)
        print(
            f"| {model} | {(d < 0.01).mean():.1%} | {(d < 0.1).mean():.1%} | {(d < 1).mean():.1%} "
            f"| {c.min():.5f} / {c.mean():.5f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
