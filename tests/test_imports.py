"""The import graph of ``t5lit/`` has no cycle.

Every import of a t5lit module counts, wherever it is written: at module level, inside a function, under
``if TYPE_CHECKING:``. ``from t5lit.x import y`` is an edge to ``t5lit.x.y`` when ``y`` is a submodule, else to
``t5lit.x``. The implicit import of a parent package's ``__init__`` (``import t5lit.data.vocab`` runs
``t5lit/data/__init__.py`` first) is not an edge: a package importing its own submodules is not a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "t5lit"
Edge = tuple[str, int]  # (file relative to the repository, line)


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = ROOT) -> dict[str, dict[str, Edge]]:
    """{module: {imported t5lit module: (file, line) of the first such import}}."""
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    graph: dict[str, dict[str, Edge]] = {m: {} for m in files}

    def known(name: str) -> str | None:
        """``name`` or its longest prefix that is a t5lit module."""
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        where = str(path.relative_to(root.parent))
        targets: list[tuple[str, int]] = []
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets += [(alias.name, node.lineno) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from .x import y / from .. import y
                    anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append((sub if sub in files else base, node.lineno))
        for name, line in targets:
            if name == "t5lit" or name.startswith("t5lit."):
                target = known(name)
                if target and target != mod:
                    graph[mod].setdefault(target, (where, line))
    return graph


def find_cycles(graph: dict[str, dict[str, Edge]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) per strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_in(graph, c) for c in components]


def _cycle_in(graph: dict[str, dict[str, Edge]], component: set[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first within the component)."""
    start = min(component)
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v]):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [start, *reversed(path[:-1]), start] if v != start else [start, start]
                if w in component and w not in parent:
                    parent[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle through {start}")  # pragma: no cover - a component always has one


def describe(graph: dict[str, dict[str, Edge]], cycle: list[str]) -> str:
    steps = [f"{a} -> {b} ({graph[a][b][0]}:{graph[a][b][1]})" for a, b in zip(cycle, cycle[1:])]
    return "\n    ".join(steps)


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    cycles = find_cycles(graph)
    assert not cycles, f"{len(cycles)} import cycle(s) in t5lit/:\n  " + "\n  ".join(
        describe(graph, c) for c in cycles)


def test_the_checker_sees_every_kind_of_import(tmp_path):
    pkg = tmp_path / "t5lit"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from t5lit.sub import b\n")  # a package importing its submodule
    (pkg / "sub" / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                      "    from t5lit.sub.b import X\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from . import c\n")
    (pkg / "sub" / "c.py").write_text("import t5lit.sub.a\n")
    (pkg / "d.py").write_text("import os\nfrom t5lit import sub\n")
    graph = import_graph(pkg)
    assert graph["t5lit.sub.a"] == {"t5lit.sub.b": ("t5lit/sub/a.py", 3)}
    assert graph["t5lit.sub.b"] == {"t5lit.sub.c": ("t5lit/sub/b.py", 2)}
    assert graph["t5lit.sub.c"] == {"t5lit.sub.a": ("t5lit/sub/c.py", 1)}  # not t5lit.sub: a parent __init__
    assert graph["t5lit.d"] == {"t5lit.sub": ("t5lit/d.py", 2)}
    assert graph["t5lit.sub"] == {"t5lit.sub.b": ("t5lit/sub/__init__.py", 1)}
    assert find_cycles(graph) == [["t5lit.sub.a", "t5lit.sub.b", "t5lit.sub.c", "t5lit.sub.a"]]
    (pkg / "sub" / "c.py").write_text("")
    assert find_cycles(import_graph(pkg)) == []
