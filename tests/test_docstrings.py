"""Every public function of ``theory`` documents its arguments and result (issue #17).

For each function in ``theory.__all__`` (classes excluded) the docstring, read with
``inspect.getdoc`` (the ``validate_args`` wrapper keeps ``__doc__`` through ``functools.wraps``),
must have a ``Returns:`` section and, unless the function takes no parameters, an ``Args:``
section, in the Google style of diffrax and optax.
"""

import inspect

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
