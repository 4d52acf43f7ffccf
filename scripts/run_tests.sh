#!/usr/bin/env bash
# Set everything up and run the test suite once per ROS 2 distribution, each in its own venv (what CI runs).
#   scripts/run_tests.sh                        # Jazzy, then Kilted; fails if either fails
#   DISTROS=kilted scripts/run_tests.sh         # one lane
#   scripts/run_tests.sh -k node                # arguments go to pytest, in every lane
set -euo pipefail
cd "$(dirname "$0")/.."
failed=()
for distro in ${DISTROS:-jazzy kilted}; do
  echo "== $distro"
  ROS_DISTRO=$distro scripts/setup_env.sh
  # a subshell per lane: each sources its own venv (as a ROS 2 prefix where ../shared/ros2-cli made it one)
  if ! (
    set +u
    . scripts/ros_distro.sh
    if [ -f "$VENV/ros_env.sh" ]; then . "$VENV/ros_env.sh"; else . "$VENV/bin/activate"; fi
    set -u
    ruff check . && python -m pytest -q "$@"  # (errexit does not apply inside an `if` condition)
  ); then
    failed+=("$distro")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "run_tests: failed on ${failed[*]}" >&2
  exit 1
fi
