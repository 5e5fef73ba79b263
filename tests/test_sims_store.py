"""The results store (ids, atomic cell files, manifests) and the runner's keys and plans."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import sims_toy  # noqa: F401  (registers "toy")
from sims.core import provenance
import sims.core as engine
from sims.host import memory
from sims.core import cellfile, store
from sims.experiments import get


# ----------------------------------------------------------------------------- ids


def test_cell_id_is_stable_and_order_free():
    a = {"m": 1000, "seed": 3, "sigma": 0.5, "mode": "x"}
    b = {"sigma": 0.5, "mode": "x", "seed": 3, "m": 1000}
    assert store.cell_id(a) == store.cell_id(b)
    assert len(store.cell_id(a)) == 16
    # NumPy scalars hash like the Python values they hold
    assert store.cell_id({**a, "m": np.int64(1000), "sigma": np.float64(0.5)}) == store.cell_id(a)
    # ...and every value matters
    assert store.cell_id({**a, "seed": 4}) != store.cell_id(a)
    # A pinned value: ids must never change between versions, or stored results are orphaned.
    assert store.cell_id({"seed": 0, "x": 1.0}) == store.digest({"x": 1.0, "seed": 0})[:16]
    assert store.canonical_json({"x": 1.0, "seed": 0}) == '{"seed":0,"x":1.0}'


@pytest.mark.parametrize("bad", [{"m": [1, 2]}, {"m": float("nan")}, {"m": object()}, {"m": {"a": 1}}])
def test_cell_values_must_be_json_scalars(bad):
    with pytest.raises(store.StoreError, match="cell\\['m'\\]"):
        store.cell_id(bad)


def test_run_id_depends_on_config_and_precision():
    cfg = {"x": [0.0, 1.0], "n": [8]}
    rid = store.run_id("toy", cfg, "float64")
    assert rid.startswith("toy-") and rid == store.run_id("toy", dict(reversed(cfg.items())), "float64")
    assert rid != store.run_id("toy", cfg, "float32")
    assert rid != store.run_id("toy", {**cfg, "n": [9]}, "float64")


# ----------------------------------------------------------------------------- cell files


def test_cell_roundtrip_plain_npz(tmp_path):
    path = tmp_path / "cells" / "abc.npz"
    arrays = {"K": np.arange(6.0).reshape(2, 3), "stat": np.float32(1.5), "file": np.int64(7), "n": 3}
    meta = {"cell_id": "abc", "cell": {"m": 3}, "ratio": float("inf")}
    cellfile.write_cell(path, arrays, meta)
    got, m = cellfile.read_cell(path)
    assert set(got) == {"K", "stat", "file", "n"}
    np.testing.assert_array_equal(got["K"], arrays["K"])
    assert got["stat"].shape == () and got["stat"].dtype == np.float32
    assert m["cell"] == {"m": 3} and m["ratio"] == float("inf")
    # A plain np.load reads it, no pickle needed.
    with np.load(path, allow_pickle=False) as z:
        assert json.loads(str(z["__meta__"][()]))["cell_id"] == "abc"
    assert cellfile.cell_done(path, "abc") and not cellfile.cell_done(path, "other")
    assert os.listdir(path.parent) == ["abc.npz"]


@pytest.mark.parametrize("name", ["__meta__", "a b", "", "x/y"])
def test_bad_result_names(tmp_path, name):
    with pytest.raises(store.StoreError, match="bad result name"):
        cellfile.write_cell(tmp_path / "c.npz", {name: np.zeros(2)}, {})
    assert not (tmp_path / "c.npz").exists()


def test_object_results_refused(tmp_path):
    with pytest.raises(store.StoreError, match="object array"):
        cellfile.write_cell(tmp_path / "c.npz", {"a": np.array([{}, 1], dtype=object)}, {})


@pytest.mark.parametrize("exc", [KeyboardInterrupt, OSError])
def test_interrupted_write_leaves_old_file_or_nothing(tmp_path, monkeypatch, exc):
    path = tmp_path / "c.npz"
    cellfile.write_cell(path, {"a": np.ones(3)}, {"v": 1})
    before = path.read_bytes()

    def boom(fd):
        raise exc("killed mid-write")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(exc):
        cellfile.write_cell(path, {"a": np.zeros(3)}, {"v": 2})
    with pytest.raises(exc):
        cellfile.write_cell(tmp_path / "new.npz", {"a": np.zeros(3)}, {"v": 2})
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["c.npz"]  # no temp file, no half-written new file


@pytest.mark.parametrize("content", [b"PK\x03\x04 truncated", b""], ids=["truncated", "empty"])
def test_garbage_file_is_not_done(tmp_path, content):
    # An empty file (what a SIGKILL right after mkstemp leaves as a temporary) makes np.load
    # raise EOFError; it must read as "not done" and as a StoreError like any other bad file.
    path = tmp_path / "c.npz"
    path.write_bytes(content)
    assert not cellfile.cell_done(path)
    assert cellfile.read_cell_meta(path) is None
    with pytest.raises(store.StoreError, match="cannot read"):
        cellfile.read_cell(path)


def test_stale_temps_of_dead_processes_are_cleaned(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".x.npz.abc.tmp-{dead_pid}"
    live = tmp_path / f".y.npz.abc.tmp-{os.getpid()}"
    keep = tmp_path / "z.npz"
    for p in (stale, live, keep):
        p.write_bytes(b"x")
    assert store.clean_stale_temps(tmp_path) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, keep.name])


def test_atomic_writer_for_other_files(tmp_path):
    with store.atomic_writer(tmp_path / "fig" / "a.txt", "w") as f:
        f.write("hello")
    assert (tmp_path / "fig" / "a.txt").read_text() == "hello"


# ----------------------------------------------------------------------------- manifests


def test_find_manifest(tmp_path):
    m1 = store.write_manifest(tmp_path, "toy", "toy-aaaa11112222", {"run_id": "toy-aaaa11112222"})
    m2 = store.write_manifest(tmp_path, "toy", "toy-aaab33334444", {"run_id": "toy-aaab33334444"})
    assert m1 == tmp_path / "toy" / "runs" / "toy-aaaa11112222.json"
    assert store.find_manifest(tmp_path, "toy-aaaa11112222") == m1
    assert store.find_manifest(tmp_path, "toy-aaab") == m2
    assert store.find_manifest(tmp_path, str(m1)) == m1
    with pytest.raises(store.StoreError, match="ambiguous"):
        store.find_manifest(tmp_path, "toy-aaa")
    with pytest.raises(store.StoreError, match="no run"):
        store.find_manifest(tmp_path, "nope")
    assert store.read_manifest(m2)["run_id"] == "toy-aaab33334444"


# ----------------------------------------------------------------------------- keys, plans, provenance


def test_cell_key_from_id_not_position():
    import jax

    cell = {"x": 1.0, "n": 8, "seed": 2}
    k = jax.random.key_data(engine.cell_key({**cell, "dtype": "float64"}))
    np.testing.assert_array_equal(k, jax.random.key_data(engine.cell_key({"seed": 2, "n": 8, "x": 1.0, "dtype": "float32"})))
    assert not np.array_equal(k, jax.random.key_data(engine.cell_key({**cell, "seed": 3})))
    assert not np.array_equal(k, jax.random.key_data(engine.cell_key({**cell, "x": 2.0})))
    assert 0 <= engine.key_seed(cell) < 2**32


def test_plan_groups_by_batch_key_and_splits_to_fit(tmp_path, monkeypatch):
    exp = get("toy")
    cfg = sims_toy.ToyConfig(x=(0.0, 1.0), n=(4,), seeds=5, mem=1000)
    p = engine.plan(exp, cfg, out=tmp_path)
    assert [len(b) for b in p.batches] == [5, 5] and p.fits and p.peak_bytes == 5000
    assert all(c.cell["dtype"] == "float64" for c in p.cells)

    p = engine.plan(exp, cfg, out=tmp_path, memory=(2500, "test"))
    assert [len(b) for b in p.batches] == [2, 2, 1, 2, 2, 1] and p.fits and p.peak_bytes == 2000
    # Batches only ever hold cells that differ in their seed.
    for b in p.batches:
        assert len({p.cells[i].cell["x"] for i in b}) == 1

    monkeypatch.setattr(memory, "available_bytes", lambda: (2500, "test"))  # the probe plan() reads
    p = engine.plan(exp, sims_toy.ToyConfig(mem=3000), out=tmp_path)
    assert not p.fits and "2.9 KiB" in p.message and "2.4 KiB" in p.message
    with pytest.raises(engine.WouldNotFit):
        engine.run(exp, sims_toy.ToyConfig(mem=3000), out=tmp_path)
    assert not tmp_path.joinpath("toy").exists()
    assert not list(tmp_path.iterdir())


def test_duplicate_cells_run_once(tmp_path):
    p = engine.plan(get("toy"), sims_toy.ToyConfig(x=(1.0, 1.0), seeds=1), out=tmp_path)
    assert len(p.cells) == 1


def test_runner_refuses_float64_without_x64(tmp_path):
    import jax

    from theory.validation import InputError

    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.raises(InputError, match="precision=float64 needs 64-bit JAX"):
            engine.run(get("toy"), sims_toy.ToyConfig(), out=tmp_path)
    finally:
        jax.config.update("jax_enable_x64", True)
    assert not list(tmp_path.iterdir())


def test_runner_recomputes_corrupt_cells(tmp_path):
    exp, cfg = get("toy"), sims_toy.ToyConfig(x=(0.5,), seeds=1)
    first = engine.run(exp, cfg, out=tmp_path)
    path = store.cell_path(tmp_path, "toy", first.computed[0])
    good = cellfile.read_cell(path)[0]["samples"]
    path.write_bytes(b"garbage")
    again = engine.run(exp, cfg, out=tmp_path)
    assert again.computed == first.computed
    np.testing.assert_array_equal(cellfile.read_cell(path)[0]["samples"], good)


def test_git_info_outside_a_checkout(tmp_path):
    assert provenance.git_info(str(tmp_path)) == {"revision": "unknown", "dirty": None}
    v = provenance.versions()
    assert set(v) == {"python", "jax", "jaxlib", "numpy", "prefix-ntk"}
