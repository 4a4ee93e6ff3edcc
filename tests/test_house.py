"""House rules checked on the source tree (AST only: nothing is imported or run).

- No function in ``xml_extractor/`` is longer than :data:`MAX_LINES` lines (``end_lineno - lineno
  + 1``, nested functions and methods counted on their own). :data:`LONG_ALLOWED` names the ones
  still being split, each with the length it may not exceed: the list only shrinks.
- No import cycle among ``xml_extractor`` modules, counting every import statement wherever it
  stands (module level, inside a function, under ``if TYPE_CHECKING:``). An import of a package
  (``from .. import x``) is an edge to the package's ``__init__``; importing a submodule is not an
  edge to its parent package (Python runs the parent first, but it is not a dependency the code
  chose). :data:`CYCLES_ALLOWED` names the edges that may still close a cycle.
- ruff check and ruff format run in ``scripts/test.sh`` beside mypy.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "xml_extractor"
MAX_LINES = 80

# (file relative to the repository, qualified function name) -> the most lines it may have
LONG_ALLOWED: dict[tuple[str, str], int] = {}  # every function is within the limit

# (importer, imported) edges that may still close a cycle: none.
CYCLES_ALLOWED: set[tuple[str, str]] = set()


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _functions(tree: ast.AST) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Every function and method with its qualified name (``Class.method``, ``outer.inner``)."""

    def walk(node: ast.AST, prefix: str) -> Iterator[tuple[str, Any]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield prefix + child.name, child
                yield from walk(child, prefix + child.name + ".")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, prefix + child.name + ".")
            else:
                yield from walk(child, prefix)

    yield from walk(tree, "")


def long_functions() -> dict[tuple[str, str], int]:
    """(file, function) -> lines, for every function over :data:`MAX_LINES`."""
    found = {}
    for path in _modules().values():
        for name, node in _functions(ast.parse(path.read_text("utf-8"))):
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            if lines > MAX_LINES:
                found[(path.relative_to(ROOT).as_posix(), name)] = lines
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports, any import statement anywhere in it."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                # ``from pkg import sub`` imports the submodule; ``from mod import name`` the module
                targets = [
                    f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source
                    for a in node.names
                ]
            graph[module].update(t for t in targets if t in modules and t != module)
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for root in sorted(graph):
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
                    cycles.append(sorted(component))
    return cycles


@pytest.mark.slow
def test_no_function_over_the_limit() -> None:
    found = long_functions()
    new = {k: v for k, v in found.items() if k not in LONG_ALLOWED}
    grown = {k: (v, LONG_ALLOWED[k]) for k, v in found.items() if v > LONG_ALLOWED.get(k, v)}
    assert not new, f"functions over {MAX_LINES} lines (split them into named steps): {new}"
    assert not grown, f"allowed long functions that grew (lines, allowed): {grown}"


@pytest.mark.slow
def test_no_import_cycle() -> None:
    graph = import_graph()
    for edge in CYCLES_ALLOWED:
        graph[edge[0]].discard(edge[1])
    cycles = import_cycles(graph)
    detail = [{m: sorted(graph[m] & set(c)) for m in c} for c in cycles]
    assert not cycles, f"import cycles among xml_extractor modules: {detail}"


@pytest.mark.slow
def test_the_checks_see_what_they_check() -> None:
    """The walkers find real functions and imports (an empty walk would pass vacuously)."""
    graph = import_graph()
    assert "xml_extractor.contract.compiler" in graph["xml_extractor.mapping"]
    assert "xml_extractor.cli.common" in graph["xml_extractor.cli.run"]
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    tree = ast.parse("class C:\n    def m(self):\n        def inner():\n            pass\n")
    assert [name for name, _ in _functions(tree)] == ["C.m", "C.m.inner"]


def test_the_test_command_runs_ruff() -> None:
    """scripts/test.sh fails a run on a lint or format finding (config: [tool.ruff])."""
    script = (ROOT / "scripts" / "test.sh").read_text("utf-8")
    assert "ruff check ." in script and "ruff format --check ." in script
