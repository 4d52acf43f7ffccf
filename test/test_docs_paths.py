"""The documents name files that exist: every relative link, and every repository path written in a command or a
code span (configs, benchmarks, research probes, docs), so moving a file without its references fails here."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [
    "README.md",
    "TRAINING.md",
    "EVALUATION.md",
    "BENCHMARKS.md",
    "research/README.md",
    "research/history/training.md",
    "research/history/evaluation.md",
]
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")
# a repository path as the documents write it in commands and code spans; {a,b} is expanded as the shell does
PATH = re.compile(
    r"(?<![\w./-])((?:config|benchmarks|research|launch|scripts|docs|alike_ros/training/configs)/"
    r"[\w./{},-]*\.(?:yaml|py|xml|md|png|json|sh))"
)


def expanded(path: str) -> list[str]:
    parts = re.split(r"\{([^{}]*)\}", path)
    choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
    return ["".join(c) for c in itertools.product(*choices)]


def named_paths(document: Path) -> set[str]:
    text = document.read_text()
    found = {m.group(1) for m in LINK.finditer(text) if ":" not in m.group(1)}  # not https://, mailto:
    for match in PATH.finditer(text):
        found.update(expanded(match.group(1)))
    return found


@pytest.mark.parametrize("name", DOCUMENTS)
def test_every_path_a_document_names_exists(name: str):
    document = ROOT / name
    missing = sorted(p for p in named_paths(document) if not (document.parent / p).exists() and not (ROOT / p).exists())
    assert not missing, f"{name} names files that are not in the repository: {missing}"


def test_the_path_pattern_finds_commands_and_links(tmp_path: Path):
    doc = tmp_path / "doc.md"
    doc.write_text(
        "run `python -m alike_ros train --config config/train_{a,b}.yaml` and see [it](docs/x/results.md).\n"
        "    python benchmarks/floor.py --runs 2\n[web](https://example.org/a.md)\n"
    )
    expected = {"config/train_a.yaml", "config/train_b.yaml", "docs/x/results.md", "benchmarks/floor.py"}
    assert named_paths(doc) == expected
