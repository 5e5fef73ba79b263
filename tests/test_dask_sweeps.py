"""Sweeps on Dask (issue 22): ``sims run NAME --workers N`` / ``--scheduler ADDRESS`` give the cells of
a one-process run bit for bit, a killed worker's cells are recomputed elsewhere, Ctrl-C cancels the
pending cells, and without Dask ``--workers`` says which extra to install (exit 2).

One local cluster of 2 worker processes serves the module (``--scheduler``); one test starts its own
(``--workers 2``).  Skipped, saying why, when Dask is not installed (the extra ``.[distributed]``, which
CI does not install: docs/scaling.md, "Dask in CI"); the tests before the skip run everywhere.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

import sims_toy
from cli_runner import invoke
from compare_results import cell_bits
import sims.core as runner
from sims.core import cellfile, claims, dask_backend, store
from sims.experiments import get

LAZY_TINY = ["--quick", "--m", "2", "--m", "4", "--m", "8", "--seeds", "1", "--p", "3", "--T", "4", "--d", "8", "--layers", "1",
             "--heads", "2", "--d-mlp", "8", "--n", "6", "--n-test", "16", "--steps", "4", "--log-every", "2",
             "--pretrain-steps", "10", "--arms", "ntk-gd", "--arms", "standard-adam"]
REPARAM_TINY = ["--quick", "--structures", "shared_linear", "--extra", "1", "--n-eff", "1e4", "--n-eff", "1e6",
                "--n", "100", "--replications", "2", "--split-starts", "1", "--random-starts", "1",
                "--polish-steps", "30", "--adam-steps", "10", "--n-test", "200"]


# lazy-prefix took 19 min here (2-core CPU at a load average near 19, 2026-12-03): over the suite's 300 s.
SLOW_DASK = [pytest.mark.slow, pytest.mark.timeout(3600)]


@pytest.mark.parametrize("name,args", [("lazy-prefix", LAZY_TINY), ("reparam", REPARAM_TINY)])
def test_slow_comparison_arguments_still_parse(tmp_path, name, args):
    """The slow comparisons' options are valid (a renamed option once broke them unseen): a dry run."""
    r = invoke("run", name, "--out", tmp_path, *args, "--dry-run")
    assert r.exit_code == 0, r.stderr
    assert not (tmp_path / name).exists()


def test_workers_without_dask_says_which_extra(tmp_path, monkeypatch):
    def missing():
        raise ImportError(dask_backend.EXTRA_HINT)

    monkeypatch.setattr(dask_backend, "require", missing)
    sims_toy.CALLS.clear()
    r = invoke("run", "toy", "--out", tmp_path, "--workers", "2")
    assert r.exit_code == 2 and '.[distributed]' in r.stderr and sims_toy.CALLS == []
    assert not (tmp_path / "toy").exists()
    for args, msg in ((["--workers", "0"], "positive"), (["--workers", "2", "--scheduler", "tcp://x:1"], "not both")):
        r = invoke("run", "toy", "--out", tmp_path, *args)
        assert r.exit_code == 2 and msg in r.stderr


distributed = pytest.importorskip(
    "distributed", reason="the Dask tests need the 'distributed' extra (pip install -e '.[distributed]'); CI installs "
    ".[test] only, because the extra's install and these tests would add minutes to it (docs/scaling.md, 'Dask in CI')")


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=40) as c, distributed.Client(c) as client:
        yield c.scheduler_address, client


@pytest.mark.parametrize("name,args", [("toy", ["--x", "0", "--x", "1", "--x", "2", "--seeds", "3"]),
                                       pytest.param("lazy-prefix", LAZY_TINY, marks=SLOW_DASK),
                                       pytest.param("reparam", REPARAM_TINY, marks=SLOW_DASK)],
                         ids=["toy", "lazy-prefix", "reparam"])
def test_workers_cells_bit_identical_to_one_process(tmp_path, name, args):
    one, many = tmp_path / "one", tmp_path / "many"
    a = invoke("run", name, "--out", one, *args, "-q")
    b = invoke("run", name, "--out", many, *args, "--workers", "2")
    assert a.exit_code == b.exit_code and a.exit_code in (0, 1), (a.stderr, b.stderr)
    assert "dask: 2 worker(s)" in b.stderr
    ref = cell_bits(one, name)
    assert ref and cell_bits(many, name) == ref
    # ...computed on the workers (other processes), written here by the driver
    metas = [cellfile.read_cell(p)[1] for p in store.cells_dir(many, name).glob("*.npz")]
    assert all(m["computed_by"]["pid"] == os.getpid() for m in metas)  # the driver wrote every file
    assert [ln for ln in a.stdout.splitlines() if "PASS" in ln or "FAIL" in ln or "UNDECIDED" in ln] == \
        [ln for ln in b.stdout.splitlines() if "PASS" in ln or "FAIL" in ln or "UNDECIDED" in ln]


def test_scheduler_option_and_nothing_to_compute(tmp_path, cluster):
    address, _ = cluster
    args = ["--x", "0", "--x", "1", "--seeds", "2"]
    assert invoke("run", "toy", "--out", tmp_path / "one", *args, "-q").exit_code == 0
    r = invoke("run", "toy", "--out", tmp_path / "many", *args, "--scheduler", address)
    assert r.exit_code == 0 and f"dask: 2 worker(s) at {address}" in r.stderr
    assert cell_bits(tmp_path / "many", "toy") == cell_bits(tmp_path / "one", "toy")
    # nothing left to compute: no cluster is used
    r = invoke("run", "toy", "--out", tmp_path / "many", *args, "--workers", "2")
    assert r.exit_code == 0 and "dask:" not in r.stderr


def test_backend_waits_through_its_own_client(tmp_path, cluster, monkeypatch):
    """Regression (the slow comparisons crashed with "RuntimeError: deque mutated during iteration"):
    ``next_done`` called ``distributed.wait``, which runs on the *current* client's event loop
    (``default_client()``), not the backend's.  With another client current (here the module's; a
    notebook's, or the ``with Client(...)`` block of a test), the futures' ``asyncio.Event``s were
    awaited in one loop thread and set from another, and ``Event.set`` iterated a deque the other
    thread mutated.  The backend must go through its own client only: the current one is never
    used (its ``sync`` is spied on), and the run gives the one-process bits."""
    address, current = cluster
    exp = get("toy")
    cfg = exp.config(x=(0.0, 1.0, 2.0), seeds=1)
    foreign = []
    real_sync = current.sync

    def spy(fn, *args, **kwargs):
        foreign.append(getattr(fn, "__name__", repr(fn)))
        return real_sync(fn, *args, **kwargs)

    with distributed.Client(address, set_as_default=False) as own, current.as_current():
        monkeypatch.setattr(current, "sync", spy)
        p = runner.plan(exp, cfg, out=tmp_path / "many")
        res = runner.execute(p, backend=dask_backend.DaskBackend(p, own), poll_s=0.05)
        monkeypatch.undo()
    assert foreign == [] and len(res.computed) == 3
    runner.run(exp, cfg, out=tmp_path / "one")
    assert cell_bits(tmp_path / "many", "toy") == cell_bits(tmp_path / "one", "toy")


def test_local_workers_keep_this_process_blas_threads(tmp_path, monkeypatch):
    """Regression (the slow reparam comparison differed in its ``polish_*`` arrays): Dask's nanny sets
    OMP/MKL/OPENBLAS_NUM_THREADS=1 in its workers, so SciPy's BLAS summed in another order there.
    A local cluster's workers get this process's settings (unset stays unset)."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    env = dask_backend.worker_environ()
    assert env["OPENBLAS_NUM_THREADS"] == "2" and "OMP_NUM_THREADS" not in env and "MKL_NUM_THREADS" not in env
    assert "MALLOC_TRIM_THRESHOLD_" in env  # Dask's other settings kept
    p = runner.plan(get("toy"), get("toy").config(x=(0.0,), seeds=1), out=tmp_path)
    backend = dask_backend.DaskBackend.local(p, workers=1)
    try:
        seen = list(backend.client.run(lambda: {k: os.environ.get(k) for k in dask_backend.THREAD_VARS}).values())
    finally:
        backend.close(cancel=True)
    assert seen == [{"OMP_NUM_THREADS": None, "MKL_NUM_THREADS": None, "OPENBLAS_NUM_THREADS": "2"}]
    assert "OMP_NUM_THREADS" not in os.environ  # nor set in this process by the nanny


def _slow_workers(client, seconds):
    def set_sleep(s=seconds):
        import sims_toy as t

        t.SLEEP_PER_BATCH[0] = s

    client.run(set_sleep)


def test_killed_worker_cells_recomputed(tmp_path, cluster):
    address, client = cluster
    exp = get("toy")
    cfg = exp.config(x=tuple(float(i) for i in range(8)), seeds=1)
    _slow_workers(client, 1.0)
    killed = []

    def on_event(e):
        if isinstance(e, runner.CellFinished) and not killed:
            busy = [w for w, tasks in client.processing().items() if tasks]
            pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
            os.kill(pid, signal.SIGKILL)  # the nanny restarts it; its task is rescheduled
            killed.append(pid)

    try:
        p = runner.plan(exp, cfg, out=tmp_path / "many")
        res = runner.execute(p, on_event=on_event, backend=dask_backend.DaskBackend(p, client))
    finally:
        _slow_workers(client, 0.0)
    assert killed and len(res.computed) == 8
    one = runner.run(exp, cfg, out=tmp_path / "one")
    assert cell_bits(tmp_path / "many", "toy") == cell_bits(tmp_path / "one", "toy") and one.rows == res.rows
    assert not [p for p in store.cells_dir(tmp_path / "many", "toy").iterdir() if p.name.startswith(".")]


def test_interrupt_cancels_pending_cells(tmp_path, cluster):
    address, client = cluster
    exp = get("toy")
    cfg = exp.config(x=tuple(float(i) for i in range(8)), seeds=1)
    _slow_workers(client, 1.0)

    def on_event(e):
        if isinstance(e, runner.CellFinished):
            raise KeyboardInterrupt

    try:
        p = runner.plan(exp, cfg, out=tmp_path)
        backend = dask_backend.DaskBackend(p, client)
        with pytest.raises(KeyboardInterrupt):
            runner.execute(p, on_event=on_event, backend=backend)
        t0 = time.time()
        while any(client.processing().values()) and time.time() - t0 < 20:
            time.sleep(0.1)
        assert not any(client.processing().values())  # the pending cells were cancelled
    finally:
        _slow_workers(client, 0.0)
    done = list(store.cells_dir(tmp_path, "toy").glob("*.npz"))
    assert 1 <= len(done) < 8 and all(cellfile.cell_done(p) for p in done)
    assert not list(claims.claims_dir(tmp_path, "toy").iterdir())
    res = runner.run(exp, cfg, out=tmp_path)  # a rerun resumes
    assert len(res.computed) == 8 - len(done)
