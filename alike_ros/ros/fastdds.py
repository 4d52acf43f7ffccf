"""The Fast DDS profile this package ships for large samples, and how the processes it starts pick it up.

Fast DDS reads its profile file from an environment variable when the first participant is created, so
`use_large_data_profile` must run before `rclpy.init`. The variable's name depends on the Fast DDS that rmw_fastrtps
loads: Fast DDS 2.x (Jazzy) reads FASTRTPS_DEFAULT_PROFILES_FILE only; Fast DDS 3.x (Kilted) reads
FASTDDS_DEFAULT_PROFILES_FILE (its rmw_fastrtps still honours the old name, with a deprecation warning). This module
is the one place that knows which applies. A profile the user set under either name is never replaced;
ALIKE_ROS_FASTDDS_PROFILE=off keeps Fast DDS's defaults (the launch file's `fastdds_profile:=false`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from pathlib import Path

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

PROFILE_FILE = "fastdds_large_data.xml"
FASTDDS_2_ENV = "FASTRTPS_DEFAULT_PROFILES_FILE"  # Fast DDS 2.x: Jazzy (2.14), Humble (2.6)
FASTDDS_3_ENV = "FASTDDS_DEFAULT_PROFILES_FILE"  # Fast DDS 3.x: Kilted (3.2) and later
PROFILE_ENVS = (FASTDDS_2_ENV, FASTDDS_3_ENV)
OPT_OUT_ENV = "ALIKE_ROS_FASTDDS_PROFILE"
# The library each major version installs, as rmw_fastrtps_cpp links it, and the variables each reads.
_LIBRARIES = {3: "libfastdds.so.3*", 2: "libfastrtps.so.2*"}
_READ_BY = {2: (FASTDDS_2_ENV,), 3: (FASTDDS_3_ENV, FASTDDS_2_ENV)}


@functools.cache
def fastdds_major() -> int | None:
    """The major version of the Fast DDS installed with ROS here (2 or 3); None when no library is found.

    The ROS prefixes are searched in order (an overlay before its underlay), then this Python's prefix (the pip
    wheels put the library in <venv>/lib)."""
    prefixes = [*os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep), sys.prefix]
    for prefix in filter(None, prefixes):
        for major, pattern in _LIBRARIES.items():
            if any((Path(prefix) / "lib").glob(pattern)):
                return major
    return None


def variables_read() -> tuple[str, ...]:
    """The variables the Fast DDS here takes its profile from, the current name first; both names where its version
    is unknown."""
    return _READ_BY.get(fastdds_major(), PROFILE_ENVS)


def profile_environment(path: str | os.PathLike[str]) -> dict[str, str]:
    """The environment that gives a process (a camera driver, a benchmark's peer) the profile at `path`: under the
    current name where the Fast DDS version is known (the old one would log a deprecation warning on 3.x), else
    under both."""
    names = variables_read()[:1] if fastdds_major() else PROFILE_ENVS
    return {name: str(path) for name in names}


def camera_setting(path: str | os.PathLike[str] | None = None) -> str:
    """What to start a camera driver's process with, as NAME=VALUE: the shipped profile under the name that
    applies here (named in diagnostics and help texts)."""
    return " ".join(f"{k}={v}" for k, v in profile_environment(path or profile_path() or PROFILE_FILE).items())


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
    applies = variables_read()
    user = [name for name in PROFILE_ENVS if os.environ.get(name)]
    if user:
        read = [name for name in user if name in applies]
        if read:
            return f"Fast DDS profile {os.environ[read[0]]} (from {read[0]} as set before start)"
        # The user's choice stays; a profile under a name this Fast DDS ignores is the mistake to point out.
        return (
            f"Fast DDS defaults: {user[0]} is set, but this Fast DDS {fastdds_major()}.x reads {applies[0]}; "
            f"set that instead to apply {os.environ[user[0]]}"
        )
    if os.environ.get(OPT_OUT_ENV, "").lower() in ("off", "0", "false"):
        return f"Fast DDS defaults ({OPT_OUT_ENV}=off): best-effort samples over 0.5 MB are lost between processes"
    path = profile_path()
    if path is None:
        return f"Fast DDS defaults: {PROFILE_FILE} not found in this installation"
    environment = profile_environment(path)
    os.environ.update(environment)
    return f"Fast DDS profile {path} (set as {', '.join(environment)})"


def profile_in_effect() -> str:
    """The profile this process's Fast DDS reads, as NAME=VALUE, or which variable it would read (diagnostics)."""
    read = variables_read()
    name = next((name for name in read if os.environ.get(name)), None)
    if name is None:
        return f"Fast DDS defaults ({read[0]} not set)"
    return f"{name}={os.environ[name]}"
