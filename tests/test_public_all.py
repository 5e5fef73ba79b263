"""What a public module lists in ``__all__`` is its documented API, and no benchmark hook.

For every module of ``theory``, ``sims`` and ``figures`` whose dotted name has no ``_``-prefixed
part: each function or class named in ``__all__`` has a docstring of its own (not the
``Name(fields)`` line that dataclasses and named tuples generate).  Constants cannot carry a
docstring and are not checked.  No name in ``__all__`` is a benchmark
hook: an unvalidated primitive (``*_unchecked``, ``*_jit``) or a function whose docstring says the
benchmarks use or time it.  Those live in ``_``-prefixed modules or stay outside ``__all__``, and
``sims/bench`` imports them by name.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
import types
from pathlib import Path

from test_import_graph import ROOT, module_names

HOOK_NAME = re.compile(r"(_unchecked|_jit)$")
HOOK_DOC = re.compile(r"benchmarks? (use|time|call)s? (it|them)", re.IGNORECASE)


def _public_modules(root: Path, packages) -> dict[str, Path]:
    return {m: p for m, p in module_names(root, packages).items()
            if not any(part.startswith("_") for part in m.split("."))}


def problems(root: Path, packages=("theory", "sims", "figures")) -> list[str]:
    """Every undocumented or hook name in a public ``__all__`` under ``root``, as ``module.name: why``."""
    out = []
    for mod in _public_modules(root, packages):
        if mod.endswith("__main__"):
            continue
        m = importlib.import_module(mod)
        for name in getattr(m, "__all__", ()):
            obj = getattr(m, name)
            if HOOK_NAME.search(name) or (callable(obj) and HOOK_DOC.search(getattr(obj, "__doc__", None) or "")):
                out.append(f"{mod}.{name}: a benchmark hook")
            if inspect.isclass(obj) or isinstance(obj, types.FunctionType) or callable(obj):
                doc = (getattr(obj, "__doc__", None) or "").strip()
                if not doc or (inspect.isclass(obj) and doc.startswith(f"{obj.__name__}(")):
                    out.append(f"{mod}.{name}: no docstring")
    return sorted(out)


def test_public_all_is_documented_and_has_no_bench_hook():
    assert problems(ROOT) == []


def test_checker_reports_undocumented_names_and_hooks(tmp_path, monkeypatch):
    # Negative control: a package whose __all__ holds each kind of fault, beside documented names.
    pkg = tmp_path / "fakeapi"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text(
        "import dataclasses\n"
        "__all__ = ['good', 'bare', 'fast_unchecked', 'timed', 'Rec', 'Doc', 'LIMIT']\n"
        "def good():\n    '''Documented.'''\n"
        "def bare():\n    pass\n"
        "def fast_unchecked():\n    '''Unvalidated.'''\n"
        "def timed():\n    '''The core loop (benchmarks time it).'''\n"
        "@dataclasses.dataclass\nclass Rec:\n    x: int\n"
        "class Doc:\n    '''Documented.'''\n"
        "LIMIT = 3\n")
    (pkg / "_private.py").write_text("__all__ = ['hidden_jit']\ndef hidden_jit():\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert problems(tmp_path, ("fakeapi",)) == [
            "fakeapi.mod.Rec: no docstring",
            "fakeapi.mod.bare: no docstring", "fakeapi.mod.fast_unchecked: a benchmark hook",
            "fakeapi.mod.timed: a benchmark hook"]
    finally:
        for name in [n for n in sys.modules if n == "fakeapi" or n.startswith("fakeapi.")]:
            del sys.modules[name]
