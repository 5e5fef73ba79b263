"""Each stored cell carries a checksum of its arrays and cell (issue 22); reading verifies it, a
damaged cell is named and recomputed (or the run stopped, exit 4, under ``--strict``), and
``sims verify`` checks a whole folder.  Negative controls: an untouched or identically rewritten
cell passes, and nothing is recomputed."""

from __future__ import annotations

import json

import numpy as np
import pytest

import sims_toy
from cli_runner import invoke
from sims.core import cellfile, store


@pytest.fixture(autouse=True)
def _fresh_calls():
    sims_toy.CALLS.clear()
    yield
    sims_toy.CALLS.clear()


def _rewrite(path, change=None, meta_change=None):
    """Rewrite a cell file by hand, as a damaged disk or a hostile user would (meta kept as is)."""
    arrays, meta = cellfile.read_cell(path, verify=False)
    if change:
        arrays = change(dict(arrays))
    if meta_change:
        meta = meta_change(dict(meta))
    np.savez(path, **arrays, **{cellfile.META_KEY: np.array(json.dumps(meta))})


def _cells(out):
    return sorted(p for p in store.cells_dir(out, "toy").glob("*.npz"))


def test_checksum_written_and_verified(tmp_path):
    path = tmp_path / "c.npz"
    cell = {"x": 1.0, "seed": 0}
    cellfile.write_cell(path, {"a": np.arange(3.0), "s": np.float32(2)}, {"cell": cell, "cell_id": store.cell_id(cell)})
    arrays, meta = cellfile.read_cell(path)
    assert meta["checksum"]["arrays"] == cellfile.arrays_digest(arrays) and meta["checksum"]["cell"] == store.digest(cell)
    assert cellfile.cell_done(path, store.cell_id(cell))
    _rewrite(path)  # same arrays, same meta: still verifies (negative control)
    assert cellfile.cell_problem(path, store.cell_id(cell)) is None
    _rewrite(path, change=lambda a: {**a, "a": a["a"] + np.array([0, 0, 1e-15])})
    with pytest.raises(cellfile.CorruptCell, match="c.npz: its arrays do not match"):
        cellfile.read_cell(path)
    assert "do not match their checksum" in cellfile.cell_problem(path, store.cell_id(cell))
    assert not cellfile.cell_done(path)
    cellfile.read_cell(path, verify=False)  # still readable on purpose


@pytest.mark.parametrize("how", ["dtype", "rename", "extra", "cell"])
def test_any_alteration_is_caught(tmp_path, how):
    path = tmp_path / "c.npz"
    cell = {"x": 1.0, "seed": 0}
    cellfile.write_cell(path, {"a": np.arange(3.0)}, {"cell": cell, "cell_id": store.cell_id(cell)})
    change = {"dtype": lambda a: {"a": a["a"].astype(np.float32)}, "rename": lambda a: {"b": a["a"]},
              "extra": lambda a: {**a, "z": np.zeros(1)}}.get(how)
    meta_change = (lambda m: {**m, "cell": {**m["cell"], "x": 2.0}}) if how == "cell" else None
    _rewrite(path, change, meta_change)
    with pytest.raises(cellfile.CorruptCell):
        cellfile.read_cell(path)


def test_file_without_checksum_is_accepted_as_unverified(tmp_path):
    path = tmp_path / "toy" / "cells" / "c.npz"
    path.parent.mkdir(parents=True)
    np.savez(path, a=np.arange(2.0), **{cellfile.META_KEY: np.array(json.dumps({"cell_id": "c"}))})
    arrays, meta = cellfile.read_cell(path)
    assert cellfile.verify_cell(path, arrays, meta) is False and cellfile.cell_done(path, "c")
    r = invoke("verify", "--out", tmp_path)
    assert r.exit_code == 0 and "1 unverified" in r.stdout


def test_damaged_cell_named_and_recomputed_with_same_verdict(tmp_path):
    assert invoke("run", "toy", "--out", tmp_path, "-q").exit_code == 0
    before = {p.stem: cellfile.read_cell(p)[0] for p in _cells(tmp_path)}
    manifest_before = json.loads(next((tmp_path / "toy" / "runs").glob("*.json")).read_text())
    # Negative control: an untouched folder verifies, and a rerun computes nothing.
    assert invoke("verify", "--out", tmp_path).exit_code == 0
    sims_toy.CALLS.clear()
    assert invoke("run", "toy", "--out", tmp_path, "-q").exit_code == 0 and sims_toy.CALLS == []
    # Alter one cell's arrays, metadata intact: a claim would now fail if the cell were used.
    victim = _cells(tmp_path)[0]
    _rewrite(victim, change=lambda a: {**a, "samples": a["samples"] + 100.0})
    r = invoke("verify", "--out", tmp_path)
    assert r.exit_code == 1 and victim.stem in r.stdout.replace("\n", "") and "1 damaged" in r.stdout
    # --strict stops before any work, naming the cell (exit 4).
    r = invoke("run", "toy", "--out", tmp_path, "--strict")
    assert r.exit_code == 4 and sims_toy.CALLS == []
    assert victim.stem in r.stderr.replace("\n", "") and "damaged" in r.stderr
    # Without --strict the cell is named, recomputed (only it), and the verdict is the first one.
    r = invoke("run", "toy", "--out", tmp_path)
    assert r.exit_code == 0 and "recomputing it" in r.stderr
    assert [store.cell_id(c) for c in sims_toy.CALLS] == [victim.stem]
    after = {p.stem: cellfile.read_cell(p)[0] for p in _cells(tmp_path)}
    assert after.keys() == before.keys()
    assert all(np.array_equal(after[k][n], before[k][n]) for k in before for n in before[k])
    manifest = json.loads(next((tmp_path / "toy" / "runs").glob("*.json")).read_text())
    assert manifest["verdict"] == manifest_before["verdict"]
    assert [c for c in manifest["cells"] if "replaced" in c][0]["cell_id"] == victim.stem
    assert invoke("verify", "--out", tmp_path).exit_code == 0


def test_verify_reports_missing_cells_and_bad_out(tmp_path):
    assert invoke("run", "toy", "--out", tmp_path, "-q").exit_code == 0
    _cells(tmp_path)[1].unlink()
    r = invoke("verify", "--out", tmp_path)
    assert r.exit_code == 1 and "1 missing" in r.stdout
    r = invoke("verify", "--out", tmp_path / "nope")
    assert r.exit_code == 2 and "not a folder" in r.stderr
