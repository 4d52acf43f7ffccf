#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment for one ROS 2 distribution with every dependency, then
# install alike_ros into it in editable mode. Idempotent; safe to run on a fresh machine.
#   scripts/setup_env.sh                       # Jazzy (the LTS) in .venv-jazzy
#   ROS_DISTRO=kilted scripts/setup_env.sh     # Kilted in .venv-kilted
# Where ../shared/ros2-cli exists (CI), it also makes the venv a ROS 2 prefix with the real command line (colcon,
# ros2 launch/run/param/topic): use it with `. .venv-jazzy/ros_env.sh`. Elsewhere that step is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ros_distro.sh
python3 -m venv "$VENV"
. "$VENV/bin/activate"
pip install --quiet --upgrade pip
# torch first and pinned, so nothing else can make pip resolve a CUDA build
pip install --quiet torch==2.13.0
pip install --quiet -r requirements.txt -r "requirements-$ROS_DISTRO.txt" -r requirements-dev.txt
pip install --quiet --no-deps -e .
ROS2_CLI=../shared/ros2-cli/install.sh
if [ -f "$ROS2_CLI" ]; then
  bash "$ROS2_CLI" "$VENV"  # returns at once when already installed
else
  echo "setup_env: $ROS2_CLI not found: the ros2 command line is not installed (its tests skip);" \
    "on a ROS 2 install source /opt/ros/$ROS_DISTRO/setup.bash instead"
fi
