"""`python -m alike_ros evaluate`: run the benchmarks for every method and write tables and plots."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..matching.matcher import MatcherConfig
from ..matching.stereo import StereoConfig
from . import benchmarks, pose, realgeo, report, stereo
from .benchmarks import Timer
from .methods import SHARED_ENV, Method, Unavailable, build_methods, shared_folder
from .metrics import REAL_MMA_THRESHOLDS
from .synthetic import synthetic_pairs

BENCHMARKS = ("synthetic", "graf", "video", "stereo", "realgeo")
DEFAULT_METHODS = "ours,upstream-alike-t,upstream-alike-n,sift,orb"


def add_shared_folder(p: argparse.ArgumentParser, flag: str, what: str, *parts: str) -> None:
    """An option for a folder of the shared data, defaulting to `shared_folder(*parts)`, said in its help."""
    default = f"${SHARED_ENV}/{'/'.join(parts)}"
    p.add_argument(flag, type=Path, default=shared_folder(*parts), help=f"{what} (default: {default})")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m alike_ros evaluate", description=__doc__)
    p.add_argument("--benchmarks", default=",".join(BENCHMARKS), help="comma-separated subset of %(default)s")
    p.add_argument(
        "--methods",
        default=DEFAULT_METHODS,
        help="ours (--model, --weights), a model by name (its bundled weights), upstream-alike-{t,s,n,l}, sift, orb",
    )
    p.add_argument("--model", default="alike-t", help="the model `ours` is")
    p.add_argument("--weights", help="weights of `ours` (default: the bundled weights of --model)")
    p.add_argument(
        "--alike-top-k",
        type=int,
        default=-1,
        help="every model of the package keeps its K best keypoints (<= 0: threshold); SIFT and ORB keep 5000",
    )
    p.add_argument(
        "--top-k",
        type=int,
        default=-1,
        help="every method keeps its K best keypoints: the models of the package and SIFT and ORB (nfeatures)",
    )
    add_shared_folder(p, "--upstream-dir", "folder of upstream's alike-*.pth", "reference", "weights")
    add_shared_folder(p, "--photos", "folder of photos the synthetic benchmark warps", "data", "photos", "eval")
    add_shared_folder(p, "--realgeo", "folder of the real-geometry sets", "data", "realgeo")
    p.add_argument(
        "--realgeo-max-side", type=int, default=1024, help="real-geometry images: longer side at most, px (0: native)"
    )
    p.add_argument("--data", type=Path, default=Path("data/eval"), help="cache of fetch_eval_data.sh (%(default)s)")
    p.add_argument("--max-side", type=int, default=480, help="synthetic images: longer side in px")
    p.add_argument("--viewpoint", type=int, default=2, help="viewpoint-like warps per photo")
    p.add_argument("--illumination", type=int, default=2, help="illumination-like warps per photo")
    p.add_argument("--limit", type=int, default=0, help="use only the first N photos (0: all)")
    p.add_argument("--video-step", type=int, default=4, help="use every STEP-th frame; match consecutive ones")
    p.add_argument("--video-frames", type=int, default=0, help="use only the first N of those frames (0: all)")
    p.add_argument(
        "--stereo-ratio", type=float, default=0.9, help="stereo: Lowe's ratio among a keypoint's row candidates"
    )
    p.add_argument("--stereo-max-disparity", type=float, default=400.0, help="stereo: largest disparity, px")
    p.add_argument("--out", type=Path, default=Path("docs/evaluation"), help="folder for results.md/json and PNGs")
    p.add_argument("--update-doc", type=Path, help="write the results block of this markdown file")
    args = p.parse_args(argv)
    args.benchmarks = [b for b in args.benchmarks.split(",") if b]
    if unknown := set(args.benchmarks) - set(BENCHMARKS):
        p.error(f"unknown benchmarks {sorted(unknown)}: choose from {','.join(BENCHMARKS)}")
    if args.video_step < 1:
        p.error("--video-step must be >= 1")
    args.stereo = StereoConfig(max_disparity=args.stereo_max_disparity)
    try:
        args.stereo.validate()
    except ValueError as exc:
        p.error(str(exc))
    return args


def run(args: argparse.Namespace, methods: list[Method | Unavailable]) -> tuple[list[report.Section], list[str]]:
    """Every benchmark for every method; sections hold rows in method order."""
    sections: list[report.Section] = []
    skipped: list[str] = []
    fetch = f"absent: run `{benchmarks.FETCH_COMMAND}` (or pass --data)"
    groups = None
    if "synthetic" in args.benchmarks:
        if args.photos is not None and args.photos.is_dir():
            groups = list(synthetic_pairs(args.photos, args.max_side, args.viewpoint, args.illumination, args.limit))
        else:
            skipped.append(f"synthetic: photo folder {args.photos} is absent (pass --photos)")
    graf = benchmarks.graf_pair(args.data) if "graf" in args.benchmarks else None
    if "graf" in args.benchmarks and graf is None:
        skipped.append(f"graf: {args.data / benchmarks.GRAF_FILES[0]} {fetch}")
    frames = (
        benchmarks.video_frames(args.data, args.video_step, args.video_frames) if "video" in args.benchmarks else None
    )
    if "video" in args.benchmarks and frames is None:
        skipped.append(f"video: {args.data / benchmarks.VIDEO_FILE} {fetch}")

    if groups:
        n = sum(len(p) for _, p in groups)
        size = "x".join(map(str, groups[0][0].shape[1::-1]))
        sections += [
            report.Section("synthetic", f"Synthetic, all ({n} pairs, longer side {args.max_side} px, e.g. {size})"),
            report.Section("synthetic-v", "Synthetic, viewpoint-like"),
            report.Section("synthetic-i", "Synthetic, illumination-like"),
        ]
    if graf is not None:
        sections.append(report.Section("graf", "graf1 → graf3 (opencv-doc, 800x640)"))
    if frames is not None:
        h, w = frames[0].shape[:2]
        title = f"Video: visp-images-data cube.mpeg ({len(frames)} frames {args.video_step} apart, {w}x{h})"
        sections.append(report.Section("video", title))
    pairs = stereo.stereo_pairs(args.data) if "stereo" in args.benchmarks else []
    if "stereo" in args.benchmarks and not pairs:
        skipped.append(f"stereo: {args.data / stereo.MOTORCYCLE[0]} and {args.data / stereo.ALOE[0]} {fetch}")
    for pair in pairs:
        h, w = pair.disparity.shape
        title = f"Stereo: {pair.name} ({w}x{h}), rows ±{args.stereo.row_tolerance:g} px, then refined on the images"
        sections.append(report.Section(f"stereo-{pair.name.lower()}", title))
    real = realgeo.RealSets()
    if "realgeo" in args.benchmarks:
        real = realgeo.load(args.realgeo, args.realgeo_max_side, f"pass --realgeo or set {SHARED_ENV}")
        skipped += real.skipped
    sections += _real_sections(real)
    by_key = {s.key: s for s in sections}
    stereo_matcher = MatcherConfig(min_similarity=-1.0, mutual=True, ratio=args.stereo_ratio)

    for method in methods:
        if isinstance(method, Unavailable):
            for section in sections:
                section.rows[method.name] = method.reason
            continue
        timer = Timer()
        if groups:
            results = benchmarks.evaluate_homography_benchmark(
                method, tqdm(groups, desc=f"{method.name} synthetic"), timer
            )
            for key, kinds in (("synthetic", "iv"), ("synthetic-v", "v"), ("synthetic-i", "i")):
                summary = benchmarks.summarise(results, kinds)
                summary.ms_per_image = timer.mean
                by_key[key].rows[method.name] = summary
        if graf is not None:
            timer = Timer()
            results = benchmarks.evaluate_homography_benchmark(method, [(graf.image0, [graf])], timer)
            by_key["graf"].rows[method.name] = benchmarks.summarise(results)
            by_key["graf"].rows[method.name].ms_per_image = timer.mean
        if frames is not None:
            timer = Timer()
            summary = benchmarks.evaluate_video(method, tqdm(frames, desc=f"{method.name} video"), timer)
            summary.ms_per_image = timer.mean
            by_key["video"].rows[method.name] = summary
        for pair in tqdm(pairs, desc=f"{method.name} stereo"):
            by_key[f"stereo-{pair.name.lower()}"].rows[method.name] = stereo.evaluate_stereo(
                method, [pair], stereo_matcher, args.stereo
            )
        for name, references in real.homographies.items():
            timer = Timer()
            progress = tqdm(references, desc=f"{method.name} {name}")
            results = benchmarks.evaluate_homography_benchmark(method, progress, timer)
            summary = benchmarks.summarise(results, thresholds=REAL_MMA_THRESHOLDS)
            summary.ms_per_image = timer.mean
            by_key[f"{report.REALGEO_PREFIX}-{name}"].rows[method.name] = summary
        for name, scenes in real.poses.items():
            timer = Timer()
            summary = pose.evaluate_pose(method, tqdm(scenes, desc=f"{method.name} {name}"), timer)
            summary.ms_per_image = timer.mean
            by_key[f"{report.POSE_PREFIX}-{name}"].rows[method.name] = summary
    return sections, skipped


def _real_sections(real: realgeo.RealSets) -> list[report.Section]:
    """A section per real-geometry set, titled with its pairs and image sizes."""

    def title(name: str, task: str, pairs: int, images: list[np.ndarray]) -> str:
        sides = sorted({max(image.shape[:2]) for image in images})
        size = str(sides[0]) if len(sides) == 1 else f"{sides[0]}-{sides[-1]}"
        return f"Real geometry, {task}: {realgeo.TITLES[name]} ({pairs} pairs, longer side {size} px)"

    sections = []
    for name, references in real.homographies.items():
        pairs = [pair for _, group in references for pair in group]
        images = [image for pair in pairs for image in (pair.image0, pair.image1)]
        key = f"{report.REALGEO_PREFIX}-{name}"
        sections.append(report.Section(key, title(name, "homographies", len(pairs), images)))
    for name, scenes in real.poses.items():
        count = sum(len(scene.pairs) for scene in scenes)
        images = [view.image for scene in scenes for view in scene.views]
        sections.append(report.Section(f"{report.POSE_PREFIX}-{name}", title(name, "relative pose", count, images)))
    return sections


def to_json(sections: list[report.Section]) -> dict:
    def plain(row):
        if isinstance(row, str):
            return {"unavailable": row}
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in asdict(row).items()}

    return {s.key: {"title": s.title, "rows": {n: plain(r) for n, r in s.rows.items()}} for s in sections}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.top_k > 0 and args.alike_top_k > 0:
        print("error: --top-k sets every method's budget, --alike-top-k only the package's: give one", file=sys.stderr)
        return 2
    package_top_k = args.top_k if args.top_k > 0 else args.alike_top_k
    requested = [m for m in args.methods.split(",") if m]
    methods = build_methods(requested, args.model, args.weights, args.upstream_dir, package_top_k, args.top_k)
    sections, skipped = run(args, methods)
    names = [m.name for m in methods]
    ours = next((n for n in names if n.startswith("ours")), None)
    reference = f"upstream {args.model}"
    gap = report.gap_table(sections, ours, reference) if ours and reference in names else None
    notes = [f"- {m.name}: {m.note}" for m in methods if isinstance(m, Method) and m.note]
    body = report.markdown(sections, skipped, gap) + "\n" + "\n".join(notes) + "\n"
    print(body)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(body)
    (args.out / "results.json").write_text(json.dumps(to_json(sections), indent=1) + "\n")
    images = []
    synthetic_like = [s for s in sections if not s.key.startswith(report.REALGEO_PREFIX)]
    real = [s for s in sections if s.key.startswith(report.REALGEO_PREFIX)]
    for plotted, name in ((synthetic_like, "mma.png"), (real, "realgeo_mma.png")):
        if report.plot_mma(plotted, args.out / name):
            images.append(args.out / name)
    video = next((s for s in sections if s.key == "video"), None)
    if video and report.plot_video(video, args.video_step, args.out / "video_inliers.png"):
        images.append(args.out / "video_inliers.png")
    if args.update_doc:
        command = "python -m alike_ros evaluate " + shlex.join(argv)
        report.update_doc(args.update_doc, command.strip(), body, images)
        print(f"updated {args.update_doc}", file=sys.stderr)
    return 0
