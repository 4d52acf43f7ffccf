"""`python -m alike_ros COMMAND ...`: one entry point for every tool of the package."""

from __future__ import annotations

import importlib
import sys

from .install import shadowed_package

COMMANDS = {
    "extract": ("alike_ros.cli.extract", "extract features from image files into .npz files"),
    "export": ("alike_ros.cli.export", "export the network as an ONNX graph (for onnxruntime, TensorRT)"),
    "node": ("alike_ros.ros.node", "run the ROS 2 extractor node (accepts --ros-args)"),
    "camera": ("alike_ros.ros.camera", "publish the sample camera trajectory live, like a camera driver"),
    "bag": ("alike_ros.bag.cli", "process, replay, generate and report rosbags"),
    "train": ("alike_ros.training.cli", "train ALIKE weights"),
    "evaluate": ("alike_ros.evaluation.cli", "evaluate weights against baselines"),
}


def usage() -> str:
    lines = ["usage: python -m alike_ros COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<9} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if problem := shadowed_package():
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv[0] not in COMMANDS:
        print(f"unknown command {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return module.main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
