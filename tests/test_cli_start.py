"""Commands load what they use, and the run context restores what it sets.

``sims --help`` must import neither JAX, matplotlib nor any experiment module; ``sims list
NAME`` only that experiment's module.  Checked in a fresh interpreter through ``sys.modules``
(not timed: the time is measured by ``scripts/bench_cli_start.py``, see docs/performance.md).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import jax
import pytest

import sims
from sims import experiments, runtime
from sims.core import experiment as registry
from sims.host import allocator, compile_cache

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("jax", "matplotlib", "scipy", "figures", "theory", "sims.experiments.")

_SCRIPT = """
import json, sys
from sims.cli.app import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)))
"""


def _modules_after(*argv: str) -> list[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="120", PREFIX_NTK_COMPILE_CACHE="off")
    r = subprocess.run([sys.executable, "-c", _SCRIPT, *argv], capture_output=True, text=True, env=env,
                       cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def _heavy(mods: list[str]) -> list[str]:
    return [m for m in mods if m.startswith(HEAVY) or m in ("jax", "matplotlib", "scipy", "figures", "theory")]


def test_help_imports_no_jax_matplotlib_or_experiment():
    assert _heavy(_modules_after("--help")) == []


def test_list_one_experiment_imports_that_one_only():
    # Also the control of the check above: a command that does load JAX and an experiment is seen doing so.
    mods = _modules_after("list", "kernel")
    assert "sims.experiments.kernel" in mods and "jax" in mods
    assert "sims.experiments.convergence" not in mods and "matplotlib" not in mods


def test_every_experiment_module_registers_the_names_it_is_listed_for():
    for name, module in experiments.MODULES.items():
        exp = experiments.get(name)
        assert exp.name == name and any(v is exp for v in vars(sys.modules[module]).values()), (name, module)
    for module in set(experiments.MODULES.values()):
        defined = {v.name for v in vars(sys.modules[module]).values() if isinstance(v, registry.Experiment)}
        assert defined <= set(experiments.MODULES), f"{module} defines {defined - set(experiments.MODULES)}, not in MODULES"
    with pytest.raises(KeyError, match="known: .*convergence"):
        experiments.get("no-such-experiment")


def test_context_sets_and_restores_precision_cache_signals(tmp_path):
    assert jax.config.jax_enable_x64  # the suite's context (conftest)
    outer = signal.getsignal(signal.SIGINT)
    if outer == signal.SIG_IGN:  # a suite started with SIGINT ignored (nohup, a background job): the
        signal.signal(signal.SIGINT, signal.default_int_handler)  # context would rightly keep it ignored
    try:
        before_int, before_cache = signal.getsignal(signal.SIGINT), jax.config.jax_compilation_cache_dir
        with sims.context("float32", compile_cache=tmp_path / "cache", signals=True):
            assert not jax.config.jax_enable_x64
            assert compile_cache.active() == str(tmp_path / "cache") and runtime.installed()
            with sims.context("float64", compile_cache="off"):  # nested: changes what it is given, restores it
                assert jax.config.jax_enable_x64 and compile_cache.active() is None and runtime.installed()
            assert not jax.config.jax_enable_x64 and compile_cache.active() == str(tmp_path / "cache")
        assert jax.config.jax_enable_x64 and jax.config.jax_compilation_cache_dir == before_cache
        assert signal.getsignal(signal.SIGINT) == before_int
    finally:
        signal.signal(signal.SIGINT, outer)


def test_context_keeps_an_ignored_sigint_ignored():
    outer = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with sims.context(signals=True):
            assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN and not runtime.installed()
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, outer)


def test_context_restores_on_error_and_refuses_a_bad_precision():
    with pytest.raises(RuntimeError):
        with sims.context("float32"):
            raise RuntimeError("inside")
    assert jax.config.jax_enable_x64
    with pytest.raises(ValueError, match="precision must be one of float64, float32"):
        with sims.context("float16"):
            pass


def test_context_allocator_is_tuned_inside_only(monkeypatch):
    monkeypatch.setenv(allocator.ENV, "system")
    with sims.context(allocator=True):
        assert allocator.state() == f"system ({allocator.ENV}=system)"
    assert allocator.state() == "system"
    monkeypatch.setenv(allocator.ENV, "fast")
    with pytest.raises(ValueError, match=allocator.ENV):
        with sims.context(signals=True, allocator=True):
            pass
    assert not runtime.installed()  # what was set before the error is restored
