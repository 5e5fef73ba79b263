"""``sims reproduce --jobs N``: experiments side by side, each in its own process.

The child processes give the same cells as one process (a cell's key comes from its id), a
crash in one child is reported while the others finish, the timed experiment runs in the
parent after the others, and a stop request ends every child.
"""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest

import sims_toy  # noqa: F401  (registers "toy")
import sims_toy_twin  # noqa: F401  (registers "toy-twin")
from cli_runner import invoke
from sims import runtime
from sims.cli import jobs as parallel
from sims.core import cellfile
from sims.report import catalog


def _catalog(monkeypatch, *, timed_twin=False):
    monkeypatch.setattr(catalog, "CATALOG", (
        catalog.Entry("toy", "other", "", "", "toy claims", cost=1),
        catalog.Entry("toy-twin", "other", "", "", "twin claims", cost=2, timed=timed_twin),
    ))


def _cells(out, experiment):
    folder = out / experiment / "cells"
    return {p.stem: {k: v for k, v in cellfile.read_cell(p)[0].items()} for p in sorted(folder.glob("*.npz"))}


def test_two_jobs_give_the_cells_of_one_process(tmp_path, monkeypatch):
    _catalog(monkeypatch)
    side = invoke("reproduce", "--out", tmp_path / "side", "--no-figures", "--jobs", "2")
    assert side.exit_code == 0, side.output
    assert "2 experiment(s), 2 at a time, each in its own process" in side.output
    assert "started toy-twin" in side.output and "started toy" in side.output
    one = invoke("reproduce", "--out", tmp_path / "one", "--no-figures", "--jobs", "1")
    assert one.exit_code == 0, one.output
    assert "each in its own process" not in one.output  # negative control: --jobs 1 stays in this process
    for exp in ("toy", "toy-twin"):
        a, b = _cells(tmp_path / "side", exp), _cells(tmp_path / "one", exp)
        assert a.keys() == b.keys() and len(a) == 4
        for cid in a:
            assert a[cid].keys() == b[cid].keys()
            for name in a[cid]:
                np.testing.assert_array_equal(a[cid][name], b[cid][name])
    again = invoke("reproduce", "--out", tmp_path / "side", "--no-figures", "--jobs", "2")
    assert again.exit_code == 0 and "each in its own process" not in again.output  # all stored: nothing to spawn


def test_a_crashed_child_is_reported_and_the_others_finish(tmp_path, monkeypatch):
    _catalog(monkeypatch)
    monkeypatch.setenv("TOY_TWIN_CRASH", "1")
    res = invoke("reproduce", "--out", tmp_path, "--no-figures", "--jobs", "2")
    assert res.exit_code == 4, res.output
    assert "toy-twin crashed on purpose" in res.output and "toy-twin crashed" in res.output
    assert "toy: 2 row(s), 0 failed; 4 cell(s) computed" in res.output


def test_a_timed_experiment_runs_alone_in_this_process(tmp_path, monkeypatch):
    _catalog(monkeypatch, timed_twin=True)
    res = invoke("reproduce", "--out", tmp_path, "--no-figures", "--jobs", "2")
    assert res.exit_code == 0, res.output
    # one side experiment is not worth a child: both ran here, in order
    assert "each in its own process" not in res.output and "started" not in res.output


def test_bad_jobs_is_a_usage_error(tmp_path, monkeypatch):
    _catalog(monkeypatch)
    res = invoke("reproduce", "--out", tmp_path, "--jobs", "0")
    assert res.exit_code == 2 and "--jobs must be a positive integer" in res.output
    assert not (tmp_path / "toy").exists()


def test_a_stop_request_ends_every_child(tmp_path):
    jobs = [parallel.Job("toy", "sims_toy", {}, str(tmp_path), "float64"),
            parallel.Job("toy-twin", "sims_toy_twin", {}, str(tmp_path), "float64")]
    runtime.STOP.requests = 1  # as after a first Ctrl-C
    try:
        with pytest.raises(KeyboardInterrupt):
            parallel.run_jobs(jobs, workers=2)
    finally:
        runtime.STOP.requests = 0
    assert not multiprocessing.active_children()
