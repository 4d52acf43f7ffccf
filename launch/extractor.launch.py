"""`ros2 launch alike_ros extractor.launch.py [params_file:=F] [namespace:=N] [image:=T] [cameras:=C] [stereo:=L:R]
[device:=D] [model:=M] [weights:=W] [use_sim_time:=true|false] [fastdds_profile:=true|false]`

Starts the ALIKE extractor node with config/extractor.yaml (or another params file). `cameras`, `device`, `model` and
`weights` override the file only when given (empty `weights` in the file: the bundled weights); `use_sim_time`
(default false) is always passed. `image` remaps the input topic of the one camera, and `<image>/compressed` follows
it; with `cameras:=left,right` each camera subscribes `<namespace>/<camera>/image`. `stereo:=left:right` starts a
stereo rig: cameras left and right (unless `cameras` names more) paired, matches on `<namespace>/left/stereo_matches`.

`fastdds_profile` (default true): unless a Fast DDS profile file is already set (FASTRTPS_DEFAULT_PROFILES_FILE or
FASTDDS_DEFAULT_PROFILES_FILE), everything this launch starts gets the installed config/fastdds_large_data.xml (large
samples between processes), under the name the Fast DDS here reads (2.x on Jazzy: FASTRTPS_..., 3.x on Kilted:
FASTDDS_...). false: Fast DDS's defaults, also in the node (ALIKE_ROS_FASTDDS_PROFILE=off, which stops the node
applying the profile by itself).
"""

import os

from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from alike_ros.ros import fastdds
from launch import Action, LaunchContext, LaunchDescription


def _flag(context: LaunchContext, name: str) -> bool:
    value = LaunchConfiguration(name).perform(context).strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"launch argument {name}:={value!r}: expected true or false")


def _extractor(context: LaunchContext) -> list[Action]:
    # Resolved at launch time so an empty argument leaves the params file's value alone.
    overrides: dict[str, object] = {
        name: value
        for name in ("device", "model", "weights", "cameras")
        if (value := LaunchConfiguration(name).perform(context))
    }
    if stereo := LaunchConfiguration("stereo").perform(context):  # a rig: its two cameras, unless cameras names more
        overrides["stereo.pairs"] = stereo
        overrides.setdefault("cameras", stereo.replace(":", ","))
    overrides["use_sim_time"] = _flag(context, "use_sim_time")
    image = LaunchConfiguration("image").perform(context)
    actions: list[Action] = []
    node_env: dict[str, str] = {}
    if not _flag(context, "fastdds_profile"):
        node_env[fastdds.OPT_OUT_ENV] = "off"
    elif not any(context.environment.get(name) for name in fastdds.PROFILE_ENVS):  # a user's profile stays
        profile = os.path.join(FindPackageShare("alike_ros").perform(context), "config", fastdds.PROFILE_FILE)
        if os.path.isfile(profile):
            actions += [SetEnvironmentVariable(k, v) for k, v in fastdds.profile_environment(profile).items()]
    actions.append(
        Node(
            package="alike_ros",
            executable="extractor",
            name="extractor",
            namespace=LaunchConfiguration("namespace"),
            parameters=[LaunchConfiguration("params_file"), overrides],
            remappings=[("image", image), ("image/compressed", f"{image}/compressed")],
            additional_env=node_env or None,
            output="screen",
            emulate_tty=True,
        )
    )
    return actions


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "params_file",
                default_value=PathJoinSubstitution([FindPackageShare("alike_ros"), "config", "extractor.yaml"]),
                description="parameters file of the extractor node",
            ),
            DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its topics"),
            DeclareLaunchArgument(
                "image", default_value="image", description="input image topic (raw transport) of the one camera"
            ),
            DeclareLaunchArgument(
                "cameras",
                default_value="",
                description="several cameras through one model, e.g. left,right (each subscribes "
                "<namespace>/<camera>/image); empty: the params file's (empty there: one camera on `image`)",
            ),
            DeclareLaunchArgument(
                "stereo",
                default_value="",
                description="a stereo pair LEFT:RIGHT (e.g. left:right): those cameras (unless `cameras` names more) "
                "and their left-right matches on <namespace>/LEFT/stereo_matches; empty: the params file's",
            ),
            DeclareLaunchArgument("device", default_value="", description="auto, cpu, cuda or cuda:N; empty: file's"),
            DeclareLaunchArgument("model", default_value="", description="alike-t, -s, -n or -l; empty: file's"),
            DeclareLaunchArgument(
                "weights",
                default_value="",
                description="weights file; empty: the params file's (empty there: the bundled weights)",
            ),
            DeclareLaunchArgument(
                "use_sim_time", default_value="false", description="true: the node's clock follows /clock (bag replay)"
            ),
            DeclareLaunchArgument(
                "fastdds_profile",
                default_value="true",
                description="true: the package's Fast DDS large-data profile unless a profile file is set "
                "(FASTRTPS_ or FASTDDS_DEFAULT_PROFILES_FILE); false: Fast DDS defaults",
            ),
            OpaqueFunction(function=_extractor),
        ]
    )
