# Sourced by the setup, test and demo scripts: which ROS 2 distribution's wheels, and the venv that holds them.
#   ROS_DISTRO=jazzy (default, the LTS) or kilted; each distribution has its own venv (.venv-jazzy, .venv-kilted)
#   because their wheels install packages of the same names.
ROS_DISTRO=${ROS_DISTRO:-jazzy}
case "$ROS_DISTRO" in
  jazzy | kilted) ;;
  *)
    echo "ROS_DISTRO=$ROS_DISTRO: the pip setup knows jazzy and kilted (PyPI has no wheels of other distributions);" \
      "on a ROS install of $ROS_DISTRO, build with colcon instead (README, Install)" >&2
    exit 2
    ;;
esac
export ROS_DISTRO
VENV=.venv-$ROS_DISTRO
