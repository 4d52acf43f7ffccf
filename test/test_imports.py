"""The package's import structure: no circles among alike_ros modules, and no arrow up between its layers.

The graph is read from the source (every `import` and `from ... import` of a module, those inside functions
included), so a circle fails here even where a deferred import keeps Python from tripping over it. Plugin
discovery (`importlib.import_module` of the extractor families and the training tasks by the registries that
load them) is not an import statement and is not an edge: the families register into the registry, which
never names them.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "alike_ros"

# (importer, imported, why): a name matches that module and, with ".*", every module below it; the CLI that
# drives the trainer is the one module of training allowed to import it
FORBIDDEN = (
    ("alike_ros.*", "alike_ros.__main__", "the entry point sits above every module"),
    ("alike_ros.extractors", "alike_ros.extractor", "the registry sits below the extractor it builds"),
    ("alike_ros.extractors", "alike_ros.extractors.*", "the registry loads the families, never imports them"),
    ("alike_ros.model.*", "alike_ros.extractor", "the networks and their weights sit below the extractor"),
    ("alike_ros.model.*", "alike_ros.extractors.*", "the networks and their weights sit below the families"),
    ("alike_ros.ros.*", "alike_ros.bag.*", "the node and the stand-in camera sit below the bag tools"),
    ("alike_ros.scene", "alike_ros.ros.*", "the synthetic scene sits below the stand-in camera"),
    ("alike_ros.scene", "alike_ros.bag.*", "the synthetic scene sits below the sample bag"),
    ("alike_ros.training.*", "alike_ros.training.trainer", "the tasks register; only the CLI drives the trainer"),
)
ALLOWED = {("alike_ros.training.cli", "alike_ros.training.trainer")}


def module_files() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def import_graph() -> dict[str, set[str]]:
    """Each alike_ros module and the alike_ros modules it imports (a `from X import name` counts X, and X.name
    where that is a module)."""
    modules = module_files()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                targets = [origin, *(f"{origin}.{alias.name}" for alias in node.names)]
            else:
                continue
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def matches(module: str, pattern: str) -> bool:
    if pattern.endswith(".*"):
        return module.startswith(pattern[:-1])
    return module == pattern


def test_the_finder_sees_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert circles(graph) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_the_graph_holds_deferred_and_relative_imports():
    graph = import_graph()
    assert "alike_ros.model.weights" in graph["alike_ros.extractor"]  # from .model.weights import load_model
    assert "alike_ros.extractors" in graph["alike_ros.model.weights"]  # inside bundled_weights_path
    assert "alike_ros.training.tasks" in graph["alike_ros.training.keynet"]  # from .tasks import register


def test_no_import_circles():
    assert circles(import_graph()) == []


def test_no_arrow_up():
    graph = import_graph()
    wrong = [
        f"{importer} imports {imported}: {why}"
        for importer, imports in graph.items()
        for imported in sorted(imports)
        for source, target, why in FORBIDDEN
        if matches(importer, source) and matches(imported, target) and (importer, imported) not in ALLOWED
    ]
    assert wrong == []
