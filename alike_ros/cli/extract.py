"""`python -m alike_ros extract IMAGE... --out DIR`: features of image files as .npz (the offline contract)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..detection.dkd import DetectorConfig
from ..extractor import Extractor
from ..model.alnet import MODEL_CONFIGS
from ..model.weights import WeightsError


def read_image(path: Path) -> np.ndarray:
    """The file as BGR or grey, 8 or 16 bit; alpha dropped."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"cannot read image {path}")
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def parser() -> argparse.ArgumentParser:
    defaults = DetectorConfig()
    p = argparse.ArgumentParser(prog="python -m alike_ros extract", description=__doc__)
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    p.add_argument("--out", required=True, type=Path, help="output folder for <image stem>.npz")
    p.add_argument("--model", default="alike-t", choices=sorted(MODEL_CONFIGS))
    p.add_argument("--weights", default=None, help="weights file (default: the bundled weights of the model)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--half", action="store_true", help="fp16 network (CUDA only)")
    p.add_argument("--top-k", type=int, default=defaults.top_k, help="> 0: best K peaks; <= 0: threshold mode")
    p.add_argument("--score-threshold", type=float, default=defaults.score_threshold)
    p.add_argument("--window-size", type=int, default=defaults.window_size)
    p.add_argument("--max-keypoints", type=int, default=defaults.max_keypoints)
    p.add_argument("--border", type=int, default=defaults.border)
    p.add_argument("--max-side", type=int, default=0, help="downscale so the longer side is at most this (0: off)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    detector = DetectorConfig(
        window_size=args.window_size,
        top_k=args.top_k,
        score_threshold=args.score_threshold,
        max_keypoints=args.max_keypoints,
        border=args.border,
    )
    try:
        extractor = Extractor(args.model, args.weights, args.device, args.half, detector, args.max_side)
    except (ValueError, WeightsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for path in tqdm(args.images, desc="extract", unit="img", disable=len(args.images) < 2):
        try:
            features = extractor(read_image(path), color="bgr")
        except ValueError as exc:
            print(f"error: {path}: {exc}", file=sys.stderr)
            failed += 1
            continue
        np.savez(
            args.out / f"{path.stem}.npz",
            keypoints=features.keypoints,
            scores=features.scores,
            descriptors=features.descriptors,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
