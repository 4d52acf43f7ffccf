"""`python -m alike_ros export --model M [--weights W] --format onnx OUT.onnx`: the network as an ONNX graph.

The graph (opset 17) is the network part of the fast path, BatchNorm folded: input `image`, 1 x 3 x H x W float32
RGB in [0, 1] with H and W multiples of 32 (pad the image at the bottom/right with zeros), dynamic; outputs
`scores` (1 x 1 x H x W sigmoid score map), `block1` (the first block's output, c1 channels at H x W) and
`branch2`..`branch4` (the coarse aggregation branches, dim/4 channels at 1/2, 1/8 and 1/32 of H x W), from which
our detection (DKD) and sub-pixel description run as in the extractor (`runtime: onnxruntime` does exactly that).
Needs the onnx package (pip install onnx). Exit status: 0, or 2 for a usage problem (unknown format, onnx not
installed, unreadable weights, OUT not writable)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import add_arguments, from_arguments
from ..export import FORMATS, INPUT, OPSET, OUTPUTS, export_problem, write_onnx
from ..model.alnet import ALNET_MODELS
from ..model.sparse_head import SparseHeadALNet
from ..model.weights import WeightsError, load_model
from ..pipeline import PipelineConfig


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m alike_ros export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("out", type=Path, metavar="OUT", help="file to write the graph to, e.g. alike-t.onnx")
    p.add_argument("--format", default="onnx", help=f"graph format: {', '.join(FORMATS)} (default: %(default)s)")
    # model and weights: the same settings, defaults and help as the node's and extract's
    add_arguments(p, PipelineConfig, only=("model", "weights"))
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = from_arguments(args, PipelineConfig)

    def fail(message: str) -> int:
        print(f"error: {message}", file=sys.stderr)
        return 2

    if args.format not in FORMATS:
        return fail(f"unknown format {args.format!r}: use {', '.join(FORMATS)}")
    if args.out.is_dir():
        return fail(f"{args.out} is a folder: give the file to write")
    if not args.out.parent.is_dir():
        return fail(f"cannot write {args.out}: the folder {args.out.parent} does not exist")
    if settings["model"] not in ALNET_MODELS:
        return fail(f"export writes the ALNet networks ({', '.join(ALNET_MODELS)}); {settings['model']} runs in torch")
    try:
        net = SparseHeadALNet(load_model(settings["model"], settings["weights"] or None))
    except (ValueError, WeightsError) as exc:
        return fail(str(exc))
    if problem := export_problem():
        return fail(problem)
    try:
        size = write_onnx(net, args.out)
    except OSError as exc:
        return fail(f"cannot write {args.out}: {exc.strerror or exc}")
    print(
        f"wrote {args.out} ({size / 1e6:.2f} MB): {settings['model']}, ONNX opset {OPSET}, "
        f"input {INPUT} 1x3xHxW (H, W multiples of 32), outputs {', '.join(OUTPUTS)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
