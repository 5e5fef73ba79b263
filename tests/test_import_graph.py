"""No import circle in ``theory``, ``sims`` or ``figures``, between modules or between packages.

The graph is read from the source with :mod:`ast` (nothing is imported): an edge ``a -> b`` for
each ``import b`` / ``from b import x`` in module ``a`` (``from pkg import mod`` is an edge to the
module ``pkg.mod``; relative imports are resolved; imports under ``if TYPE_CHECKING:`` are skipped,
they never run).  Two graphs are checked:

* the module graph of the imports that run when a module is loaded (module level), and the same
  graph with the imports inside functions added: a circle hidden by moving one import into a
  function is still a circle between the two modules;
* the package graph, each module replaced by its subpackage (``theory.kernels.prefix`` ->
  ``theory.kernels``; a module directly under a top package stays itself), so that
  ``theory.kernels -> theory.scaling -> theory.kernels`` is caught even when no two modules form
  a circle.

A negative control writes a tiny package with a known circle of each kind to ``tmp_path`` and
checks that the same functions report it.

Imports sit at the top of modules.  An import inside a function is kept only where a heavy or
optional dependency justifies it (JAX while ``sims --help`` must not load it, the notebooks and
Dask extras, the CLI's lazy commands), and then says why on its own line: ``# lazy: <reason>``.
``sims/bench/ntcompat.py`` (the neural-tangents compatibility layer, which patches JAX only when
asked) keeps its own.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("theory", "sims", "figures")
LAZY_EXEMPT = ("sims/bench/ntcompat.py",)
LAZY = re.compile(r"#\s*lazy:\s*\S")


def module_names(root: Path, packages=PACKAGES) -> dict[str, Path]:
    """``{dotted module name: file}`` of every ``.py`` file under the given top packages."""
    out = {}
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.Module, functions: bool):
    """The import statements that run on loading (``functions=False``), or all of them."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            if functions:
                stack.extend(ast.iter_child_nodes(node))
        elif isinstance(node, ast.stmt) or isinstance(node, ast.excepthandler):
            stack.extend(ast.iter_child_nodes(node))


def _targets(node, module: str, is_package: bool, known: set[str]) -> list[str]:
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module
        names = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in known else prefix for a in node.names]
    out = []
    for name in names:  # the longest known module the name starts with
        parts = name.split(".")
        while parts and ".".join(parts) not in known:
            parts.pop()
        if parts:
            out.append(".".join(parts))
    return out


def import_graph(root: Path, packages=PACKAGES, functions: bool = False) -> dict[str, set[str]]:
    """``{module: modules it imports}`` among the modules of ``packages`` under ``root``."""
    mods = module_names(root, packages)
    known = set(mods)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in _import_nodes(tree, functions):
            graph[mod].update(t for t in _targets(node, mod, path.name == "__init__.py", known) if t != mod)
    return graph


def package_of(module: str, packages_dirs: set[str]) -> str:
    """The subpackage a module belongs to: its first two parts when they name a package, else itself."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 or ".".join(parts[:2]) in packages_dirs else module


def package_graph(graph: dict[str, set[str]], root: Path) -> dict[str, set[str]]:
    """The module graph with each module replaced by :func:`package_of` (edges inside a package dropped)."""
    dirs = {m for m in graph if (root / m.replace(".", "/") / "__init__.py").exists() and m.count(".") == 1}
    out: dict[str, set[str]] = {}
    for a, bs in graph.items():
        pa = package_of(a, dirs)
        out.setdefault(pa, set())
        out[pa].update(pb for pb in (package_of(b, dirs) for b in bs) if pb != pa)
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (each an import circle), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan; the graphs here are a few hundred nodes deep at most
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_the_graph_sees_the_project():
    graph = import_graph(ROOT)
    assert len(graph) > 100
    assert "theory.kernels.models" in graph["theory.kernels.prefix"]
    assert "sims.core.store" in graph["sims.core.execution"]


def test_no_module_import_circle():
    assert cycles(import_graph(ROOT)) == []


def test_no_module_circle_hidden_in_a_function():
    assert cycles(import_graph(ROOT, functions=True)) == []


def test_no_package_import_circle():
    assert cycles(package_graph(import_graph(ROOT, functions=True), ROOT)) == []


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, src in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(src, encoding="utf-8")


def test_checker_reports_a_known_circle(tmp_path):
    # Negative control: a module circle (a <-> b, one side relative), one hidden in a function
    # (c -> d at module level, d -> c inside a function), one between packages only (p.x -> q.y,
    # q.z -> p.w: no module circle), and a TYPE_CHECKING import that is not a circle.
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg import b\n",
        "pkg/b.py": "from . import a\n",
        "pkg/c.py": "import pkg.d\n",
        "pkg/d.py": "def f():\n    from pkg.c import g\n",
        "pkg/e.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import f\n",
        "pkg/f.py": "import pkg.e\n",
        "pkg/p/__init__.py": "", "pkg/p/x.py": "from pkg.q import y\n", "pkg/p/w.py": "",
        "pkg/q/__init__.py": "", "pkg/q/y.py": "", "pkg/q/z.py": "from pkg.p.w import thing\n",
    })
    loaded = import_graph(tmp_path, ("pkg",))
    assert cycles(loaded) == [["pkg.a", "pkg.b"]]
    everything = import_graph(tmp_path, ("pkg",), functions=True)
    assert cycles(everything) == [["pkg.a", "pkg.b"], ["pkg.c", "pkg.d"]]
    assert ["pkg.p", "pkg.q"] in cycles(package_graph(everything, tmp_path))


def unexplained_function_imports(root: Path, packages=PACKAGES, exempt=LAZY_EXEMPT) -> list[str]:
    """``file:line`` of every import inside a function whose lines carry no ``# lazy: <reason>``."""
    bad = []
    for path in module_names(root, packages).values():
        rel = path.relative_to(root).as_posix()
        if rel in exempt:
            continue
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for fn in ast.walk(ast.parse(text, filename=str(path))):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    span = lines[node.lineno - 1: node.end_lineno]
                    if not any(LAZY.search(line) for line in span):
                        bad.append(f"{rel}:{node.lineno}")
    return sorted(set(bad))


def test_every_function_level_import_says_why():
    assert unexplained_function_imports(ROOT) == []


def test_unexplained_function_import_is_reported(tmp_path):
    # Negative control: one bare import in a function, one in a nested function, one explained, one at the top.
    _write(tmp_path, {
        "pkg/__init__.py": "import os\n",
        "pkg/m.py": ("def f():\n    import json\n\n"
                     "def g():\n    def h():\n        from os import path\n    return h\n\n"
                     "def k():\n    import numpy  # lazy: heavy, only here\n\n"
                     "def e():\n    import csv  # lazy:\n"),
    })
    assert unexplained_function_imports(tmp_path, ("pkg",), exempt=()) == ["pkg/m.py:13", "pkg/m.py:2", "pkg/m.py:6"]
