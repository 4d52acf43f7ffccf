"""`python -m alike_ros extract IMAGE... --out DIR`: features of image files as .npz (the offline contract).

Each IMAGE gives DIR/<image stem>.npz. Two images with the same stem (a/x.png and b/x.png, or x.png and
x.jpg) would write the same file: the command refuses them before extracting anything; run them with
different --out folders. The same file named twice is extracted once."""

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
    p = argparse.ArgumentParser(
        prog="python -m alike_ros extract", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="image files (8 or 16 bit, grey or colour)")
    p.add_argument("--out", required=True, type=Path, help="output folder (created if needed) for <image stem>.npz")
    p.add_argument("--model", default="alike-t", choices=sorted(MODEL_CONFIGS), help="ALIKE variant (%(default)s)")
    p.add_argument("--weights", default=None, help="weights file (default: the bundled weights of the model)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (%(default)s)")
    p.add_argument("--half", action="store_true", help="fp16 network (CUDA only)")
    p.add_argument(
        "--top-k", type=int, default=defaults.top_k, help="> 0: best K peaks; <= 0: threshold mode (%(default)s)"
    )
    p.add_argument(
        "--score-threshold",
        type=float,
        default=defaults.score_threshold,
        help="peaks must score strictly above this (%(default)s; use 0 for upstream's top-k output)",
    )
    p.add_argument(
        "--window-size",
        type=int,
        default=defaults.window_size,
        help="NMS and sub-pixel refinement window, odd >= 3 (%(default)s)",
    )
    p.add_argument(
        "--max-keypoints", type=int, default=defaults.max_keypoints, help="cap in either mode, best kept (%(default)s)"
    )
    p.add_argument(
        "--border",
        type=int,
        default=defaults.border,
        help="peaks need border < x <= W-1-border, likewise y (%(default)s)",
    )
    p.add_argument(
        "--max-side",
        type=int,
        default=0,
        help="downscale so the longer side is at most this before the network; keypoints are given in the "
        "original pixels (0: off; images over 50 Mpixel need it)",
    )
    return p


def output_paths(images: list[Path], out: Path) -> list[tuple[Path, Path]]:
    """(image, DIR/<stem>.npz) in order, a file named twice only once; a ValueError naming any clash."""
    jobs: list[tuple[Path, Path]] = []
    seen: set[Path] = set()
    writer: dict[Path, Path] = {}
    for image in images:
        if image.resolve() in seen:
            continue
        seen.add(image.resolve())
        target = out / f"{image.stem}.npz"
        if target in writer:
            raise ValueError(
                f"{writer[target]} and {image} would both write {target}: "
                "extract images with the same stem into different --out folders"
            )
        writer[target] = image
        jobs.append((image, target))
    return jobs


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        jobs = output_paths(args.images, args.out)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out.exists() and not args.out.is_dir():
        print(f"error: --out {args.out} exists and is not a folder", file=sys.stderr)
        return 2
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
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"error: cannot create the output folder {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    failed = 0
    for path, target in tqdm(jobs, desc="extract", unit="img", disable=len(jobs) < 2):
        try:
            features = extractor(read_image(path), color="bgr")
            np.savez(
                target,
                keypoints=features.keypoints,
                scores=features.scores,
                descriptors=features.descriptors,
            )
        except (ValueError, OSError) as exc:
            print(f"error: {path}: {exc}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
