"""Every public function of ``theory`` documents its arguments and result; docstrings say what a thing is.

For each function in ``theory.__all__`` (classes excluded) the docstring, read with
``inspect.getdoc`` (the ``validate_args`` wrapper keeps ``__doc__`` through ``functools.wraps``),
must have a ``Returns:`` section and, unless the function takes no parameters, an ``Args:``
section, in the Google style of diffrax and optax.

No docstring or comment in ``theory``, ``sims`` or ``figures`` names an issue (``issue 16``) or
carries a date (``2026-12-01``): those are history, kept in git and ``docs/``, not a description
of the code.
"""

import ast
import inspect
import io
import re
import tokenize
from pathlib import Path

import pytest

import theory

FUNCTIONS = sorted(n for n in theory.__all__ if inspect.isfunction(getattr(theory, n)))


def test_there_are_public_functions():
    assert len(FUNCTIONS) > 30


@pytest.mark.parametrize("name", FUNCTIONS)
def test_public_function_documents_args_and_returns(name):
    fn = getattr(theory, name)
    doc = inspect.getdoc(fn) or ""
    lines = [line.strip() for line in doc.splitlines()]
    missing = []
    if inspect.signature(fn).parameters and "Args:" not in lines:
        missing.append("Args:")
    if "Returns:" not in lines:
        missing.append("Returns:")
    assert not missing, f"theory.{name} docstring lacks the section(s) {missing}"


MODULES = ("theory.moe.identifiability", "theory.moe.two_point", "theory.transformer.adapters", "theory.transformer.lazy",
           "theory.transformer.model", "theory.transformer.tasks", "theory.transformer.train")


def _module_functions():
    import importlib

    for mod_name in MODULES:
        mod = importlib.import_module(mod_name)
        for name in mod.__all__:
            if inspect.isfunction(getattr(mod, name)):
                yield f"{mod_name}.{name}"


@pytest.mark.parametrize("qualname", sorted(_module_functions()))
def test_module_function_documents_args_returns_raises(qualname):
    import importlib

    mod_name, name = qualname.rsplit(".", 1)
    fn = getattr(importlib.import_module(mod_name), name)
    lines = [line.strip() for line in (inspect.getdoc(fn) or "").splitlines()]
    wanted = (["Args:"] if inspect.signature(fn).parameters else []) + ["Returns:", "Raises:"]
    missing = [w for w in wanted if w not in lines]
    assert not missing, f"{qualname} docstring lacks the section(s) {missing}"


HISTORY = re.compile(r"\bissues? #?\d+|\b20\d\d-\d\d-\d\d\b", re.IGNORECASE)
ROOT = Path(__file__).resolve().parent.parent


def history_mentions(root: Path, packages=("theory", "sims", "figures")) -> list[str]:
    """``file:line: text`` of every docstring or comment under ``packages`` naming an issue or a date."""
    found = []
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            rel = path.relative_to(root).as_posix()
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    doc = ast.get_docstring(node, clean=False)
                    if doc and HISTORY.search(doc):
                        line = node.body[0].lineno
                        found.append(f"{rel}:{line}: {HISTORY.search(doc).group(0)}")
            for tok in tokenize.generate_tokens(io.StringIO(text).readline):
                if tok.type == tokenize.COMMENT and HISTORY.search(tok.string):
                    found.append(f"{rel}:{tok.start[0]}: {HISTORY.search(tok.string).group(0)}")
    return sorted(found)


def test_no_issue_number_or_date_in_source_docstrings():
    assert history_mentions(ROOT) == []


def test_history_check_reports_issues_and_dates(tmp_path):
    # Negative control: a module docstring with an issue, a function docstring with a date, a
    # comment with "issues 3", and clean text that only looks close (a version, a year alone).
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "m.py").write_text('"""Fix for issue 21."""\n'
                              'def f():\n    """Measured on 2026-12-01."""\n'
                              'x = 1  # see issues 3 and 4\n'
                              'def g():\n    """JAX 0.10.2 in 2026, tissue 5."""\n')
    assert history_mentions(tmp_path, ("pkg",)) == ["pkg/m.py:1: issue 21", "pkg/m.py:3: 2026-12-01",
                                                    "pkg/m.py:4: issues 3"]
