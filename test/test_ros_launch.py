"""launch/extractor.launch.py, checked where launch_ros is importable (a real ROS 2 install)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("launch_ros", reason="launch_ros is not installed here (it comes with a ROS 2 install)")

from launch.actions import DeclareLaunchArgument, OpaqueFunction  # noqa: E402
from launch_ros.actions import Node  # noqa: E402

from launch import LaunchContext  # noqa: E402

LAUNCH_FILE = Path(__file__).resolve().parents[1] / "launch" / "extractor.launch.py"


def load_description():
    spec = importlib.util.spec_from_file_location("extractor_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def test_launch_arguments_and_node():
    description = load_description()
    arguments = {a.name: a for a in description.entities if isinstance(a, DeclareLaunchArgument)}
    assert set(arguments) == {"params_file", "namespace", "image", "device", "model"}
    (function,) = [e for e in description.entities if isinstance(e, OpaqueFunction)]
    context = LaunchContext()
    for name, value in {
        "params_file": "/tmp/p.yaml",
        "namespace": "cam0",
        "image": "/cam0/image_raw",
        "device": "cpu",
        "model": "",
    }.items():
        context.launch_configurations[name] = value
    (node,) = function.execute(context)
    assert isinstance(node, Node)
    assert node.node_package == "alike_ros" and node.node_executable == "extractor"
