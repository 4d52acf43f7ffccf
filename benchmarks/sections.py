"""BENCHMARKS.md is written section by section: each benchmark replaces its own `## Title` section only."""

from __future__ import annotations

import platform
import re
from pathlib import Path


def replace_section(path: Path, section: str) -> None:
    """Put `section` (markdown whose first line is its `## Title`) in place of the file's section of that title,
    or append it; every other section stays as it is."""
    title = section.splitlines()[0]
    if not title.startswith("## "):
        raise ValueError(f"a section starts with its '## ' title, not {title!r}")
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    block = section.rstrip("\n") + "\n\n"
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + block
    path.write_text(text.rstrip("\n") + "\n")


BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def publish(section: str, write: bool) -> None:
    """Print a benchmark's section, and with `write` put it into BENCHMARKS.md in place of its old one."""
    print(section)
    if write:
        replace_section(BENCHMARKS, section)


def machine() -> str:
    """The CPU as benchmark headers name it: its model and the vector units that decide convolution speed. Machines
    of the same kind differ (AMD EPYC with AVX2 and Intel Xeon with AVX-512 and AMX have both served), so figures
    from different days compare only where this line is the same."""
    info = Path("/proc/cpuinfo")
    text = info.read_text() if info.exists() else ""
    name = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
    present = set(flags.group(1).split()) if flags else set()
    units = [label for flag, label in (("avx512f", "AVX-512"), ("amx_tile", "AMX")) if flag in present]
    if not units and "avx2" in present:
        units = ["AVX2"]
    model = name.group(1) if name else platform.processor() or "unknown CPU"
    return f"{model} ({', '.join([platform.machine(), *units])})"


def ros_stack() -> tuple[str, str]:
    """The ROS 2 distribution whose wheels run here (rclpy 7.x: Jazzy, 9.x: Kilted) and the versions that decide
    transport, for benchmark headers: each distribution's figures get their own section."""
    from importlib.metadata import PackageNotFoundError, version

    def of(*names: str) -> str:
        for name in names:
            try:
                return version(name)
            except PackageNotFoundError:
                continue
        return "?"

    rclpy = of("ros-rclpy")
    distro = {"7": "Jazzy", "9": "Kilted"}.get(rclpy.split(".")[0], f"rclpy {rclpy}")
    fastdds = of("ros-fastdds", "ros-fastrtps")
    return distro, f"rclpy {rclpy}, rmw_fastrtps_cpp {of('ros-rmw-fastrtps-cpp')}, Fast DDS {fastdds}"
