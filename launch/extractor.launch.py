"""`ros2 launch alike_ros extractor.launch.py [params_file:=F] [namespace:=N] [image:=T] [device:=D] [model:=M]`

Starts the ALIKE extractor node with config/extractor.yaml (or another params file). `device` and `model`
override the file only when given; `image` remaps the input topic, and `<image>/compressed` follows it.
"""

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchContext, LaunchDescription


def _extractor(context: LaunchContext) -> list[Node]:
    # Resolved at launch time so an empty argument leaves the params file's value alone.
    overrides = {name: value for name in ("device", "model") if (value := LaunchConfiguration(name).perform(context))}
    image = LaunchConfiguration("image").perform(context)
    return [
        Node(
            package="alike_ros",
            executable="extractor",
            name="extractor",
            namespace=LaunchConfiguration("namespace"),
            parameters=[LaunchConfiguration("params_file"), *([overrides] if overrides else [])],
            remappings=[("image", image), ("image/compressed", f"{image}/compressed")],
            output="screen",
            emulate_tty=True,
        )
    ]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "params_file",
                default_value=PathJoinSubstitution([FindPackageShare("alike_ros"), "config", "extractor.yaml"]),
                description="parameters file of the extractor node",
            ),
            DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its topics"),
            DeclareLaunchArgument("image", default_value="image", description="input image topic (raw transport)"),
            DeclareLaunchArgument("device", default_value="", description="auto, cpu, cuda or cuda:N; empty: file's"),
            DeclareLaunchArgument("model", default_value="", description="alike-t, -s, -n or -l; empty: file's"),
            OpaqueFunction(function=_extractor),
        ]
    )
