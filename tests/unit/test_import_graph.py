"""The layers run one way: an import graph of qroll's sub-packages, read from the source.

Every ``import`` statement counts, those inside functions too: a lazy import is still a
dependency (it only hides a cycle until the function runs). ARCHITECTURE.md draws the layers.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

import qroll

SRC = Path(qroll.__file__).parent


def _node(module: str) -> str | None:
    """The sub-package (or top-level module) a dotted qroll module belongs to; None outside qroll."""
    parts = module.split(".")
    if parts[0] != "qroll":
        return None
    return parts[1] if len(parts) > 1 else "qroll"


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names; relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ".".join(("qroll", *path.relative_to(SRC).with_suffix("").parts))
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _graph() -> dict[str, dict[str, set[str]]]:
    """sub-package → the sub-packages it imports → the files that do."""
    graph: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        here = _node(".".join(("qroll", *(parts[:-1] if parts[-1] == "__init__" else parts))))
        assert here is not None
        for module in _imports(path):
            there = _node(module)
            if module.split(".")[0] != "qroll":
                there = f"<{module.split('.')[0]}>"  # a third-party package, e.g. <mlflow>
            if there is not None and there != here:
                graph[here][there].add(str(path.relative_to(SRC)))
    return graph


GRAPH = _graph()


def test_the_graph_was_read():
    # The graph must see imports at all, or the tests below pass on nothing.
    assert "record" in GRAPH["train"] and "pool" in GRAPH["train"]
    assert "<mlflow>" in GRAPH["record"]
    assert "data" in GRAPH["tasks"]


@pytest.mark.parametrize(("package", "forbidden"), [
    ("pool", {"train", "record", "collect", "experiment", "run_config", "<mlflow>"}),
    ("data", {"tasks", "train", "record", "collect", "pool"}),
])
def test_a_lower_layer_imports_nothing_above_it(package, forbidden):
    bad = {there: sorted(files) for there, files in GRAPH[package].items() if there in forbidden}
    assert not bad, f"{package}/ imports {bad}"


def _cycles(graph: dict[str, dict[str, set[str]]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w == "qroll":
                continue  # the curated API imports everything; nothing below may import it
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def test_no_cycle_between_sub_packages():
    cycles = _cycles(GRAPH)
    detail = {tuple(c): {a: {b: sorted(GRAPH[a][b]) for b in c if b in GRAPH[a]} for a in c} for c in cycles}
    assert not cycles, f"import cycles: {detail}"


def test_only_the_command_line_imports_the_curated_api():
    users = sorted(here for here, theres in GRAPH.items() if "qroll" in theres and here != "cli")
    assert not users, f"{users} import the top-level qroll package; import from the sub-package instead"


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b": {"a.py"}}, "b": {"c": {"b.py"}}, "c": {"a": {"c.py"}}, "d": {"a": {"d.py"}}}
    assert _cycles(graph) == [["a", "b", "c"]]
