"""launch/extractor.launch.py, checked where launch_ros is importable (a ROS 2 install, or a venv set up with
../shared/ros2-cli/install.sh and `. .venv-jazzy/ros_env.sh` or `.venv-kilted`'s, as scripts/run_tests.sh does). The
launch run end to end with the real `ros2 launch` is in test_ros2_cli.py."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

try:
    from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
    from launch.utilities import perform_substitutions
    from launch_ros.actions import Node
    from launch_ros.utilities import evaluate_parameters

    from alike_ros.ros import fastdds
    from launch import LaunchContext
except ImportError as exc:  # launch_ros needs composition_interfaces, which ros_env.sh puts on the path
    pytest.skip(
        f"launch_ros is not importable here ({exc}): it comes with a ROS 2 install, or on a pip-only machine with "
        "../shared/ros2-cli/install.sh .venv-jazzy and `. .venv-jazzy/ros_env.sh`",
        allow_module_level=True,
    )

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILE = ROOT / "launch" / "extractor.launch.py"
OPT_OUT_ENV = fastdds.OPT_OUT_ENV
ARGUMENTS = {
    *("params_file", "namespace", "image", "cameras", "stereo", "device", "model", "weights", "use_sim_time"),
    "fastdds_profile",
}


def load_description():
    spec = importlib.util.spec_from_file_location("extractor_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


@pytest.fixture
def share(tmp_path, monkeypatch) -> Path:
    """An ament prefix holding alike_ros with its Fast DDS profile, as `colcon build` installs it."""
    index = tmp_path / "share" / "ament_index" / "resource_index" / "packages"
    index.mkdir(parents=True)
    (index / "alike_ros").touch()
    config = tmp_path / "share" / "alike_ros" / "config"
    config.mkdir(parents=True)
    (config / "fastdds_large_data.xml").write_text("<dds/>\n")  # the launch file only passes its path on
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path))
    # setenv first, so monkeypatch restores the caller's value (or its absence) after SetEnvironmentVariable ran
    for name in (*fastdds.PROFILE_ENVS, OPT_OUT_ENV):
        monkeypatch.setenv(name, "")
    return tmp_path / "share" / "alike_ros"


def run_function(**arguments: str) -> tuple[LaunchContext, list]:
    """The launch description's defaults, overridden by `arguments`, and what its OpaqueFunction returns."""
    description = load_description()
    context = LaunchContext()
    for entity in description.entities:
        if isinstance(entity, DeclareLaunchArgument):
            assert entity.name in ARGUMENTS
            value = arguments.get(entity.name)
            context.launch_configurations[entity.name] = (
                value if value is not None else perform_substitutions(context, entity.default_value)
            )
    (function,) = [e for e in description.entities if isinstance(e, OpaqueFunction)]
    return context, function.execute(context)


def node_of(actions: list) -> Node:
    nodes = [a for a in actions if isinstance(a, Node)]
    assert len(nodes) == 1 and actions[-1] is nodes[0]  # environment actions come first, so the node gets them
    return nodes[0]


def node_env(context: LaunchContext, node: Node) -> dict[str, str]:
    return {perform_substitutions(context, k): perform_substitutions(context, v) for k, v in node.additional_env or []}


def node_overrides(context: LaunchContext, node: Node) -> tuple[Path, dict]:
    params_file, *overrides = evaluate_parameters(context, node._Node__parameters)
    assert len(overrides) == 1
    return params_file, overrides[0]


def test_launch_arguments():
    description = load_description()
    arguments = {a.name: a for a in description.entities if isinstance(a, DeclareLaunchArgument)}
    assert set(arguments) == ARGUMENTS
    context = LaunchContext()
    defaults = {
        name: perform_substitutions(context, a.default_value) for name, a in arguments.items() if name != "params_file"
    }
    assert defaults == {
        "namespace": "",
        "image": "image",
        "cameras": "",
        "stereo": "",
        "device": "",
        "model": "",
        "weights": "",
        "use_sim_time": "false",
        "fastdds_profile": "true",
    }
    for name in ARGUMENTS:  # every argument says what it does (`ros2 launch ... --show-args`)
        assert arguments[name].description


def test_node_and_overrides(share):
    context, actions = run_function(
        params_file="/tmp/p.yaml", namespace="cam0", image="/cam0/image_raw", device="cpu", weights="/w/alike-t.pth"
    )
    node = node_of(actions)
    assert node.node_package == "alike_ros" and node.node_executable == "extractor"
    params_file, overrides = node_overrides(context, node)
    assert str(params_file) == "/tmp/p.yaml"
    # empty arguments (model here) leave the params file's value alone; use_sim_time is always passed
    assert overrides == {"device": "cpu", "weights": "/w/alike-t.pth", "use_sim_time": False}


def test_a_camera_list_reaches_the_node(share):
    context, actions = run_function(params_file="/tmp/p.yaml", cameras="left,right")
    assert node_overrides(context, node_of(actions))[1] == {"cameras": "left,right", "use_sim_time": False}


def test_a_stereo_rig_from_the_launch_line(share):
    context, actions = run_function(params_file="/tmp/p.yaml", stereo="left:right")
    overrides = node_overrides(context, node_of(actions))[1]
    assert overrides == {"cameras": "left,right", "stereo.pairs": "left:right", "use_sim_time": False}
    context, actions = run_function(params_file="/tmp/p.yaml", stereo="left:right", cameras="left,right,rear")
    assert node_overrides(context, node_of(actions))[1]["cameras"] == "left,right,rear"


def test_use_sim_time(share):
    context, actions = run_function(params_file="/tmp/p.yaml", use_sim_time="true")
    assert node_overrides(context, node_of(actions))[1] == {"use_sim_time": True}
    with pytest.raises(ValueError, match="use_sim_time"):
        run_function(params_file="/tmp/p.yaml", use_sim_time="maybe")


def test_fastdds_profile_set_for_everything_launched(share):
    context, actions = run_function(params_file="/tmp/p.yaml")
    set_envs = [a for a in actions if isinstance(a, SetEnvironmentVariable)]
    names = [perform_substitutions(context, a.name) for a in set_envs]
    # the name this distribution's Fast DDS reads (2.x: FASTRTPS_..., 3.x: FASTDDS_...), and only that one
    assert names == [fastdds.variables_read()[0]]
    profile = perform_substitutions(context, set_envs[0].value)
    assert Path(profile) == share / "config" / "fastdds_large_data.xml"
    assert OPT_OUT_ENV not in node_env(context, node_of(actions))
    set_envs[0].execute(context)  # what `ros2 launch` does before it starts the node
    assert context.environment[names[0]] == profile


@pytest.mark.parametrize("name", fastdds.PROFILE_ENVS)
def test_fastdds_profile_of_the_user_is_kept(share, monkeypatch, name):
    monkeypatch.setenv(name, "/home/user/my_profile.xml")
    context, actions = run_function(params_file="/tmp/p.yaml")
    assert not [a for a in actions if isinstance(a, SetEnvironmentVariable)]
    assert node_env(context, node_of(actions)) == {}
    assert os.environ[name] == "/home/user/my_profile.xml"


def test_fastdds_profile_off_reaches_the_node(share):
    context, actions = run_function(params_file="/tmp/p.yaml", fastdds_profile="false")
    assert not [a for a in actions if isinstance(a, SetEnvironmentVariable)]
    assert node_env(context, node_of(actions)) == {OPT_OUT_ENV: "off"}
