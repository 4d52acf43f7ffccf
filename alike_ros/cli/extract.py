"""`python -m alike_ros extract IMAGE... --out DIR`: features of image files as .npz (the offline contract).

Each IMAGE gives DIR/<image stem>.npz. Two images with the same stem (a/x.png and b/x.png, or x.png and
x.jpg) would write the same file: the command refuses them before extracting anything; run them with
different --out folders. The same file named twice is extracted once."""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from ..config import add_arguments, from_arguments
from ..detection.dkd import DetectorConfig
from ..extractor import STAGES, Features
from ..extractors import FeatureExtractor
from ..model.weights import WeightsError
from ..monitoring import timed_ms
from ..overlap import WriteBehind, read_ahead
from ..pipeline import PipelineConfig, batch_pays, build_extractor, mask_of

BATCH = 4  # images per network pass where batches pay (`pipeline.batch_pays`: on CUDA)


def read_image(path: Path) -> np.ndarray:
    """The file as BGR or grey, 8 or 16 bit; alpha dropped."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"cannot read image {path}")
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m alike_ros extract", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="image files (8 or 16 bit, grey or colour)")
    p.add_argument("--out", required=True, type=Path, help="output folder (created if needed) for <image stem>.npz")
    # the settings, their defaults, ranges and help are the core configs' own, as for the node and the bag tool
    add_arguments(
        p, PipelineConfig, only=("model", "weights", "device", "half", "runtime", "max_side", "mask", "threads")
    )
    add_arguments(p, DetectorConfig)
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
    config = PipelineConfig(
        **{**from_arguments(args, PipelineConfig), "warmup_frames": 0},  # offline: no frame-rate to protect
        detector=DetectorConfig(**from_arguments(args, DetectorConfig)),
    )
    try:
        extractor = build_extractor(config)
    except (ValueError, WeightsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"error: cannot create the output folder {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    failed = extract_all(extractor, jobs, mask_of(config))
    return 1 if failed else 0


def batches(items: Iterable[tuple[Path, Path, Any]], size: int) -> Iterator[list[tuple[Path, Path, Any]]]:
    """Consecutive (path, target, image) items in groups of at most `size` images of one shape; an item whose image
    could not be read (an exception in its place) is a group of its own."""
    group: list[tuple[Path, Path, Any]] = []
    for item in items:
        readable = isinstance(item[2], np.ndarray)
        if group and (not readable or len(group) == size or item[2].shape != group[0][2].shape):
            yield group
            group = []
        if not readable:
            yield [item]
            continue
        group.append(item)
    if group:
        yield group


def extract_all(extractor: FeatureExtractor, jobs: list[tuple[Path, Path]], mask: np.ndarray | None = None) -> int:
    """Each image's features into its file; the number that failed (each named on stderr). Images are read and
    decoded ahead and files written behind in threads (`overlap`), in order; the time of every stage is printed. On
    CUDA, consecutive images of one size go through the network together (`batches`). `mask`: every image's (an
    image of another size fails, named)."""
    timings: dict[str, list[float]] = {stage: [] for stage in ("read", *STAGES, "write")}
    failures: list[Path] = []

    def fail(path: Path, exc: Exception) -> None:
        print(f"error: {path}: {exc}", file=sys.stderr)
        failures.append(path)

    def read(path: Path) -> np.ndarray | ValueError:
        with timed_ms(timings["read"]):
            try:
                return read_image(path)
            except ValueError as exc:
                return exc

    def write(path: Path, target: Path, features: Features, _nothing: None) -> None:
        with timed_ms(timings["write"]):
            try:
                np.savez(target, keypoints=features.keypoints, scores=features.scores, descriptors=features.descriptors)
            except OSError as exc:
                fail(path, exc)

    def extract(group: list[tuple[Path, Path, np.ndarray]]) -> list[Features | None]:
        """One network pass for the group where it can (see `batches`), else one by one, each failure named."""
        if len(group) > 1:
            with contextlib.suppress(ValueError):  # an unusable image in the batch: one by one names it
                return extractor.batch([(image, "bgr") for _, _, image in group], masks=[mask] * len(group))
        found: list[Features | None] = []
        for path, _, image in group:
            try:
                found.append(extractor(image, color="bgr", mask=mask))
            except ValueError as exc:
                fail(path, exc)
                found.append(None)
        return found

    start = time.perf_counter()
    images = read_ahead(lambda: ((path, target, read(path)) for path, target in jobs))
    batch = BATCH if batch_pays(extractor) else 1
    progress = tqdm(total=len(jobs), desc="extract", unit="img", disable=len(jobs) < 2)
    with WriteBehind(contextlib.nullcontext) as behind, progress:
        for group in batches(images, batch):
            progress.update(len(group))
            if isinstance(group[0][2], ValueError):
                fail(group[0][0], group[0][2])
                continue
            for (path, target, _), features in zip(group, extract(group), strict=True):
                if features is None:
                    continue
                for stage in STAGES:
                    timings[stage].append(features.timings[stage])
                behind.submit(partial(write, path, target, features))
    if jobs:
        wall = (time.perf_counter() - start) * 1e3 / len(jobs)
        stages = ", ".join(f"{stage} {statistics.fmean(ms):.1f}" for stage, ms in timings.items() if ms)
        print(f"extract: {len(jobs)} images, {wall:.1f} ms/image ({stages} ms; read ahead and written behind)")
    return len(failures)


if __name__ == "__main__":
    sys.exit(main())
