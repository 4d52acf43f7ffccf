"""The Fast DDS profile this package ships for large samples, and how the processes it starts pick it up.

Fast DDS reads FASTDDS_DEFAULT_PROFILES_FILE when the first participant is created, so `use_large_data_profile`
must run before `rclpy.init`. A profile the user set is never replaced; ALIKE_ROS_FASTDDS_PROFILE=off keeps
Fast DDS's defaults (the launch file's `fastdds_profile:=false`).
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

PROFILE_FILE = "fastdds_large_data.xml"
PROFILE_ENV = "FASTDDS_DEFAULT_PROFILES_FILE"
OPT_OUT_ENV = "ALIKE_ROS_FASTDDS_PROFILE"


def profile_path() -> Path | None:
    """The installed profile: the ament share folder (colcon, ROS install), a pip prefix, or a source checkout."""
    candidates = [Path(sys.prefix) / "share" / "alike_ros" / "config" / PROFILE_FILE]
    with contextlib.suppress(PackageNotFoundError, OSError):  # not in the ament index, or no index: a pip install
        candidates.insert(0, Path(get_package_share_directory("alike_ros")) / "config" / PROFILE_FILE)
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "package.xml").is_file():  # an editable install runs from its source tree
        candidates.append(checkout / "config" / PROFILE_FILE)
    return next((path for path in candidates if path.is_file()), None)


def use_large_data_profile() -> str:
    """Point Fast DDS at the shipped profile unless the user chose otherwise; say what is in effect."""
    if os.environ.get(PROFILE_ENV):
        return f"Fast DDS profile {os.environ[PROFILE_ENV]} (from {PROFILE_ENV} as set before start)"
    if os.environ.get(OPT_OUT_ENV, "").lower() in ("off", "0", "false"):
        return f"Fast DDS defaults ({OPT_OUT_ENV}=off): best-effort samples over 0.5 MB are lost between processes"
    path = profile_path()
    if path is None:
        return f"Fast DDS defaults: {PROFILE_FILE} not found in this installation"
    os.environ[PROFILE_ENV] = str(path)
    return f"Fast DDS profile {path}"
