"""`python -m alike_ros bag {make-sample,process,replay,report} ...`: rosbag tools without the ros2 CLI."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..model.weights import WeightsError
from .storage import STORAGES, BagError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m alike_ros bag", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("make-sample", help="write a synthetic camera-motion bag with ground-truth homographies")
    s.add_argument("out", type=Path, help="bag folder to write")
    s.add_argument("--frames", type=int, default=60, help="frames per camera (60: one cycle of the motion)")
    s.add_argument("--cameras", type=int, default=1, help="number of cameras (/camera, or /cam0, /cam1, ...)")
    s.add_argument(
        "--stereo",
        action="store_true",
        help="a rectified stereo rig instead: /stereo/left and /stereo/right with camera_info and known disparity",
    )
    s.add_argument("--width", type=int, default=320, help="image width in pixels (%(default)s)")
    s.add_argument("--height", type=int, default=240, help="image height in pixels (%(default)s)")
    s.add_argument("--rate", type=float, default=10.0, help="frames per second of bag time")
    s.add_argument("--storage", choices=sorted(STORAGES), default="sqlite3", help="bag storage (%(default)s)")
    s.add_argument("--compressed", action="store_true", help="sensor_msgs/CompressedImage (JPEG) instead of Image")
    s.add_argument(
        "--encoding",
        default="bgr8",
        help="the Image encoding, as a driver of it stores the frames: any input encoding of the node, e.g. "
        "bayer_rggb8, bayer_gbrg16, yuv422, yuv422_yuy2, nv21, rgb16, 32FC1 (README: Topics; %(default)s)",
    )
    s.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")

    s = sub.add_parser("process", help="run the extractor and tracker on every image into a new bag")
    s.add_argument("inp", type=Path, metavar="IN", help="input bag")
    s.add_argument("out", type=Path, metavar="OUT", help="output bag: every input topic plus the features")
    s.add_argument("--image-topic", action="append", default=[], help="image topic (repeatable; default: all)")
    s.add_argument("--params", type=Path, help="node params YAML (config/extractor.yaml format)")
    s.add_argument("--weights", help="weights file (overrides the params file)")
    s.add_argument("--device", help="auto, cpu, cuda or cuda:N (overrides the params file)")
    s.add_argument("--debug-image", action="store_true", help="also write NS/debug_image")
    s.add_argument(
        "--stereo",
        action="append",
        default=[],
        metavar="LEFT:RIGHT",
        help="a stereo pair of camera namespaces (repeatable), e.g. /stereo/left:/stereo/right: paired by stamp "
        "(stereo.max_skew) and matched into LEFT/stereo_matches",
    )
    s.add_argument("--threads", type=int, help="CPU threads for torch (overrides the params file)")
    s.add_argument("--storage", choices=sorted(STORAGES), help="output storage (default: the input's)")
    s.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    s.add_argument("--quiet", action="store_true", help="no progress bar")

    s = sub.add_parser("replay", help="publish a bag's messages into a live ROS graph (rclpy)")
    s.add_argument("inp", type=Path, metavar="IN", help="bag to publish")
    s.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    s.add_argument("--loop", action="store_true", help="start over at the end, until interrupted")
    s.add_argument("--topic-map", nargs="+", default=[], metavar="OLD:NEW", help="publish topic OLD as NEW")
    s.add_argument("--topics", nargs="+", default=[], help="only these (bag) topics")
    s.add_argument("--clock", action="store_true", help="publish bag time on /clock (for use_sim_time)")
    s.add_argument(
        "--wait-for-subscribers",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before playing, wait up to this long until every image topic has a subscriber",
    )
    s.add_argument("--record", type=Path, metavar="BAG", help="meanwhile record --record-topics into this bag")
    s.add_argument(
        "--record-topics",
        nargs="+",
        default=[],
        metavar="TOPIC:TYPE",
        help="topics to record, e.g. /camera/features:sensor_msgs/msg/PointCloud2",
    )
    s.add_argument(
        "--lockstep",
        nargs="+",
        default=[],
        metavar="TOPIC",
        help="after each image, wait for one more message on these PointCloud2 topics (the node drops no frame)",
    )
    s.add_argument(
        "--lockstep-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="with --lockstep: the longest wait for one frame's outputs before going on (counted; %(default)s)",
    )
    s.add_argument(
        "--record-grace",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="keep recording this long after the last message",
    )

    s = sub.add_parser(
        "report", help="per-frame counts, keypoints, matches, tracks, timings; accuracy where ground truth exists"
    )
    s.add_argument("bag", type=Path, help="a bag written by `bag process` (or recorded from the node)")
    s.add_argument("--plot", type=Path, help="write a matplotlib figure (png, pdf, svg): per-frame panels, timing")
    s.add_argument(
        "--video", type=Path, help="write the frames with their longer tracks drawn, as .gif or .mp4 (>= 640 px wide)"
    )
    s.add_argument(
        "--ground-truth",
        type=Path,
        help="optional bag with the NS/homography topics (default: BAG itself); without them, no accuracy",
    )
    s.add_argument("--threshold", type=float, default=3.0, help="pixels within which a match is correct")
    s.add_argument("--json", type=Path, help="write the summary as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "make-sample":
            from .sample import SampleConfig, make_sample

            config = SampleConfig(
                args.frames,
                args.width,
                args.height,
                args.rate,
                args.cameras,
                args.compressed,
                stereo=args.stereo,
                encoding=args.encoding,
            )
            path = make_sample(args.out, config, args.storage, args.overwrite)
            cameras = "a stereo pair" if args.stereo else f"{args.cameras} camera(s)"
            images = "jpeg" if args.compressed else args.encoding
            print(f"wrote {path} ({args.frames} frames x {cameras}, {images}, {args.storage})")
        elif args.command == "process":
            from ..parameter_table import Settings, read_params
            from .process import process_bag

            params = read_params(args.params) if args.params else {}
            overrides = (("weights", args.weights), ("device", args.device), ("threads", args.threads))
            params.update({k: v for k, v in overrides if v})
            settings = Settings.from_params(params)
            summary = process_bag(
                args.inp,
                args.out,
                settings,
                args.image_topic,
                args.debug_image,
                args.storage,
                args.overwrite,
                progress=not args.quiet,
                stereo=args.stereo,
            )
            for ns, cam in summary["cameras"].items():
                # the mean of a sum is the sum of the means: every stage's time per frame, conversion to matching
                compute = sum(stage["mean"] for stage in cam["timings_ms"].values())
                print(
                    f"{ns}: {cam['processed']}/{cam['frames']} frames processed from {cam['image_topic']}, "
                    f"skipped {cam['skipped'] or 0}"
                    + (f", {compute:.1f} ms/frame (conversion to matching)" if cam["processed"] else "")
                )
            for left, pair in summary["stereo"].items():
                print(
                    f"{left}:{pair['right']}: {pair['pairs']} pairs matched, {pair['matches_mean']:.0f} matches per "
                    f"pair, unpaired {pair['unpaired']}; {pair['geometry']}"
                )
            io = summary["io_timings_ms"]
            print(
                f"wrote {args.out}: {summary['ms_per_frame']:.1f} ms/frame in all; reading {io['read']['mean']:.2f} "
                f"and writing {io['write']['mean']:.2f} ms/message in background threads"
            )
        elif args.command == "replay":
            from .replay import replay_main

            return replay_main(args)
        elif args.command == "report":
            from .report import report_main

            return report_main(args)
    except (BagError, ValueError, WeightsError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
