"""The ``sims`` command's persistent compilation cache: where it goes, off, and recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sims.core import cellfile, store
from sims.host import compile_cache

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def test_resolve_option_then_environment_then_default(tmp_path):
    assert compile_cache.resolve(None, {}) == compile_cache.default_dir()
    assert compile_cache.resolve(None, {compile_cache.ENV: str(tmp_path)}) == tmp_path
    assert compile_cache.resolve(None, {compile_cache.ENV: "off"}) is None
    assert compile_cache.resolve("OFF", {compile_cache.ENV: str(tmp_path)}) is None
    assert compile_cache.resolve(tmp_path / "a", {compile_cache.ENV: "off"}) == tmp_path / "a"
    assert compile_cache.default_dir().parts[-2:] == ("prefix-ntk", "jax")


def test_enabled_restores_the_settings(tmp_path):
    import jax

    before = jax.config.jax_compilation_cache_dir
    with compile_cache.enabled(tmp_path / "c") as folder:
        assert compile_cache.active() == str(folder) and folder.is_dir()
    assert jax.config.jax_compilation_cache_dir == before


_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import sims_toy
from sims.cli.app import main
main(sys.argv[1:])
"""


def _run(out: Path, *extra: str) -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop(compile_cache.ENV, None)
    r = subprocess.run([sys.executable, "-c", _SCRIPT.format(tests=str(TESTS)), "run", "toy", "--out", str(out),
                        "--seeds", "1", "-q", *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(next((out / "toy" / "runs").iterdir()).read_text())


def test_cache_written_and_recorded(tmp_path):
    cache = tmp_path / "cache"
    m = _run(tmp_path / "a", "--compile-cache", str(cache))
    assert m["provenance"]["compile_cache"] == str(cache)
    assert any(cache.iterdir())  # the toy's programs were written to the cache


@pytest.mark.slow
def test_cold_then_warm_same_numbers_and_off(tmp_path):
    cache = tmp_path / "cache"
    cold = _run(tmp_path / "a", "--compile-cache", str(cache))
    warm = _run(tmp_path / "b", "--compile-cache", str(cache))
    for cid in cold["cell_ids"]:
        a = cellfile.read_cell(store.cell_path(tmp_path / "a", "toy", cid))[0]
        b = cellfile.read_cell(store.cell_path(tmp_path / "b", "toy", cid))[0]
        assert all(np.array_equal(a[k], b[k]) for k in a)
    assert warm["cell_ids"] == cold["cell_ids"]
    off = _run(tmp_path / "c", "--compile-cache", "off")
    assert off["provenance"]["compile_cache"] is None
