"""Sweeps on Dask: the batches of a plan computed by Dask workers, the files written by the driver.

    backend = DaskBackend.local(p, workers=4)             # a LocalCluster of 4 worker processes
    backend = DaskBackend.connect(p, "tcp://host0:8786")  # a cluster started by the user
    result = execute(p, backend=backend)

Each task is :func:`compute_on_worker`: it sets the run's precision (``jax_enable_x64``) and
compile cache in the worker, imports the experiment's module (which registers it), rebuilds the
run's device mesh and calls :func:`sims.core.execution.compute_batch`, the very function the single
process calls, with the same cells and so the same keys; it returns the arrays.  Cells never
depend on their batch-mates, so a worker gives the bits of one process.  The driver
claims, stores and judges as in one process (:func:`sims.core.execution.execute`).

A worker that dies has its tasks rescheduled on the others by Dask (``distributed.scheduler.
allowed-failures``, default 3); nothing it computed was written, since only the driver writes.
Ctrl-C (``KeyboardInterrupt`` in the driver) cancels the pending tasks; finished cells are on
disk.  Dask is an optional extra: ``pip install -e ".[distributed]"``; :func:`require` says so.
"""

from __future__ import annotations

import importlib
import os
import time
from pathlib import Path
from typing import Any

import jax

from sims.core import experiment as registry
from sims.core import provenance
from sims.core.execution import Done, add_cells_note, compute_batch
from sims.core.planning import Plan, PlannedCell
from sims.host import compile_cache as cc
from sims.host import devices as dev

__all__ = ["EXTRA_HINT", "THREAD_VARS", "require", "scheduler_from_env", "worker_environ", "compute_on_worker",
           "DaskBackend"]

EXTRA_HINT = 'Dask is not installed: pip install -e ".[distributed]" (or pip install "dask[distributed]")'


def require() -> Any:
    """``distributed`` (the Dask module), or ``ImportError`` with :data:`EXTRA_HINT`."""
    try:
        import distributed  # lazy: Dask is an optional extra, loaded only for a distributed run
    except ImportError:
        raise ImportError(EXTRA_HINT) from None
    return distributed


def scheduler_from_env(environ: dict[str, str] | None = None) -> str | None:
    """``$DASK_SCHEDULER_ADDRESS`` (None if unset or empty)."""
    value = (os.environ if environ is None else environ).get("DASK_SCHEDULER_ADDRESS", "").strip()
    return value or None


#: Thread counts of NumPy/SciPy's BLAS and OpenMP, which Dask's nanny sets to 1 in its workers.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def worker_environ(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Dask's ``distributed.nanny.pre-spawn-environ`` with :data:`THREAD_VARS` as in ``environ``
    (this process's: unset stays unset, so BLAS uses every core, as here).

    Dask sets them to 1 in every worker, and BLAS then sums in another order than in this process:
    the reparam experiment's modulus polish (SciPy's SLSQP) gave other bits on a worker than in
    one process (``polish_*`` arrays; the JAX results were identical).
    """
    import dask  # lazy: the optional extra, present once require() passed

    environ = os.environ if environ is None else environ
    pre = {k: v for k, v in dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {}).items()
           if k not in THREAD_VARS}
    pre.update({k: environ[k] for k in THREAD_VARS if k in environ})
    return pre


def compute_on_worker(module: str, name: str, cells: list[dict], precision: str, devices: int,
                      compile_cache: str | None) -> list[dict]:
    """One batch on a worker: the run's settings, then :func:`sims.core.execution.compute_batch`.

    ``compile_cache`` is the driver's cache folder (None: no persistent cache); ``devices`` the
    run's device count per cell (rebuilt here from this worker's local devices).
    """
    jax.config.update("jax_enable_x64", precision == "float64")
    importlib.import_module(module)  # registers the experiment in this process
    exp = registry.get(name)
    mesh = dev.run_mesh(devices if exp.shardable else None, experiment=name, shardable=exp.shardable)
    with cc.enabled(None if compile_cache is None else Path(compile_cache)):
        return compute_batch(exp, cells, mesh)


class DaskBackend:
    """Batches submitted to a Dask cluster; :meth:`next_done` hands back finished ones."""

    capacity = float("inf")  # every batch submitted at once (each one claimed when submitted)

    def __init__(self, p: Plan, client: Any, *, cluster: Any = None, compile_cache: str | None = None,
                 own_client: bool = False):
        """``client``: a ``distributed.Client``; closed by :meth:`close` only if ``own_client`` (as
        :meth:`local` and :meth:`connect` make it), else left to its owner."""
        self.p = p
        self.client = client
        self.own_client = own_client
        self.cluster = cluster
        self.compile_cache = compile_cache
        self._futures: dict[Any, tuple[int, tuple[PlannedCell, ...], float]] = {}
        self._distributed = require()

    @classmethod
    def local(cls, p: Plan, *, workers: int, compile_cache: str | None = None) -> "DaskBackend":
        """A ``LocalCluster`` of ``workers`` single-threaded worker processes (dashboard on a free port),
        whose BLAS thread settings are this process's (:func:`worker_environ`)."""
        distributed = require()
        import dask  # lazy: the optional extra, present once require() passed

        with dask.config.set({"distributed.nanny.pre-spawn-environ": worker_environ()}):
            cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                               dashboard_address=":0", silence_logs=40)
        return cls(p, distributed.Client(cluster), cluster=cluster, compile_cache=compile_cache, own_client=True)

    @classmethod
    def connect(cls, p: Plan, address: str, *, compile_cache: str | None = None) -> "DaskBackend":
        """The cluster whose scheduler listens at ``address`` (``tcp://HOST:PORT``)."""
        distributed = require()
        return cls(p, distributed.Client(address), compile_cache=compile_cache, own_client=True)

    @property
    def workers(self) -> int:
        return len(self.client.scheduler_info(n_workers=-1).get("workers", {}))

    @property
    def busy(self) -> int:
        return len(self._futures)

    def submit(self, index: int, members: tuple[PlannedCell, ...]) -> None:
        p = self.p
        fut = self.client.submit(compute_on_worker, p.exp.run.__module__, p.exp.name, [m.cell for m in members],
                                 p.precision, p.devices, self.compile_cache, pure=False)
        self._futures[fut] = (index, members, time.perf_counter())

    def next_done(self, timeout: float) -> list[Done]:
        """The batches finished within ``timeout`` seconds (maybe none); a task's error is raised."""
        try:
            # Wait through this backend's own client: ``distributed.wait`` alone runs on the
            # *current* client's event loop (``default_client()``: a ``with Client(...)`` block or a
            # notebook's client), and the futures' events would then be waited on in one loop thread
            # and set in another; ``asyncio.Event`` is not thread-safe ("deque mutated during iteration").
            with self.client.as_current():
                finished = self._distributed.wait(list(self._futures), timeout=timeout,
                                                  return_when="FIRST_COMPLETED").done
        except TimeoutError:
            return []
        out = []
        for fut in finished:
            index, members, t0 = self._futures.pop(fut)
            try:
                outs = fut.result()
            except Exception as e:
                add_cells_note(e, self.p.exp, members)
                raise
            now = provenance.now()
            out.append(Done(index, members, outs, now, now, time.perf_counter() - t0))
        return out

    def close(self, *, cancel: bool) -> None:
        """Cancel what is pending (``cancel``), then close the client and any cluster it started."""
        if cancel and self._futures:
            self.client.cancel(list(self._futures))
        self._futures.clear()
        if self.own_client:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
