"""Whether `alike_ros` is the installed package: run from the parent folder of a clone named alike_ros, the name
is that folder instead. Imports nothing of the package, so the entry point and the weights loading can say so
before they import the rest."""

from __future__ import annotations

import sys


def shadowed_package() -> str | None:
    """Run from the parent folder of a clone named alike_ros, `alike_ros` is that folder as a namespace package:
    the problem in one line, else None (checked before any command imports the rest of the package)."""
    package = sys.modules.get("alike_ros")
    if package is None or getattr(package, "__file__", None):
        return None
    folder = next(iter(getattr(package, "__path__", [])), "the repository")
    return (
        f"'alike_ros' was imported from {folder}, a folder without __init__.py (the repository, run from its "
        f"parent folder): run from inside the repository or install the package: pip install -e {folder}"
    )
