#!/usr/bin/env bash
# Set everything up and run the test suite (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_env.sh
if [ -f .venv/ros_env.sh ]; then
  # the venv as a ROS 2 prefix (../shared/ros2-cli): launch_ros and the ros2 command line importable in tests
  set +u
  . .venv/ros_env.sh
  set -u
else
  . .venv/bin/activate
fi
ruff check .
python -m pytest -q "$@"
