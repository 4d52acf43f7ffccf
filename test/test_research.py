"""The research probes stay runnable from the repository root, as research/README.md gives their commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROBES = sorted((ROOT / "research").glob("*.py"))


def test_every_probe_is_in_the_index():
    index = (ROOT / "research" / "README.md").read_text()
    assert PROBES, "no probes in research/"
    assert not [p.name for p in PROBES if f"`{p.name}`" not in index], "a probe missing from research/README.md"


@pytest.mark.parametrize("name", ["compile_and_threads.py", "half_precision.py"])  # they borrow benchmarks/ helpers
def test_a_probe_finds_the_benchmark_helpers_it_borrows(name: str):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, f"research/{name}", "--help"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
