"""Carry out a plan: compute the pending cells call by call, store each, judge, record.

    p = plan(exp, config, out="results")
    result = execute(p, on_event=print)   # events: Started, BatchStarted, CellFinished, ...
    result.rows, result.passed

The engine draws nothing: it reports what happens as plain event values (below) to
``on_event``, and the caller (the CLI's progress bar or log lines, a notebook, a test) decides
what to show.  :func:`run` is ``execute(plan(...))`` for callers that need no plan of their own.

The engine never flips global JAX state: for ``precision="float64"`` the caller must have
enabled ``jax_enable_x64`` (the CLI does), otherwise :class:`theory.validation.InputError`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections import deque
from typing import Any, Callable

import jax
import jax.numpy as jnp

from sims.core import cellfile, claims, provenance, record, store
from sims.core.experiment import Experiment, VerdictRow
from sims.core.planning import Plan, PlannedCell, WouldNotFit, cell_key, plan, short_cell

__all__ = [
    "Started",
    "BatchStarted",
    "CellFinished",
    "BatchFinished",
    "Waiting",
    "Finished",
    "Event",
    "RunResult",
    "execute",
    "run",
    "compute_batch",
    "SerialBackend",
    "Done",
    "verdict_rows",
    "wait_for_device",
]


# ----------------------------------------------------------------------------- events


@dataclasses.dataclass(frozen=True)
class Started:
    """The run begins: ``total`` cells to compute in ``calls`` calls (stored cells excluded)."""

    plan: Plan
    total: int
    calls: int


@dataclasses.dataclass(frozen=True)
class BatchStarted:
    """Call ``index`` (0-based) of ``calls`` begins, computing ``cells``; ``done`` cells are finished."""

    index: int
    calls: int
    cells: tuple[PlannedCell, ...]
    done: int
    total: int


@dataclasses.dataclass(frozen=True)
class CellFinished:
    """One cell computed and stored at ``path``."""

    cell: PlannedCell
    done: int
    total: int


@dataclasses.dataclass(frozen=True)
class BatchFinished:
    """Call ``index`` ended: ``done`` of ``total`` cells finished, ``elapsed_s`` since the run began."""

    index: int
    calls: int
    size: int
    done: int
    total: int
    call_s: float
    elapsed_s: float


@dataclasses.dataclass(frozen=True)
class Waiting:
    """Nothing finished in the last poll: ``cells`` are those held by other processes, waited for
    once this run's own are done (empty while this run's batches are still computing elsewhere)."""

    cells: tuple[PlannedCell, ...]
    done: int
    total: int


@dataclasses.dataclass(frozen=True)
class Finished:
    """The verdict is judged and the manifest written."""

    result: "RunResult"


Event = Started | BatchStarted | CellFinished | BatchFinished | Waiting | Finished


@dataclasses.dataclass
class RunResult:
    """What a run produced: its id and manifest, verdict rows, computed and reused cell ids, results and plan."""

    run_id: str
    manifest_path: Any
    rows: list[VerdictRow]
    passed: bool
    computed: list[str]
    reused: list[str]
    results: list[tuple[dict, dict]]
    plan: Plan


# ----------------------------------------------------------------------------- running


def add_cells_note(e: BaseException, exp: Experiment, members: tuple[PlannedCell, ...]) -> None:
    """Say in ``e``'s traceback which cells were being computed."""
    ids = ", ".join(m.cell_id for m in members)
    e.add_note(f"while running {exp.name} cell(s) {ids}: {short_cell(members[0].cell, 200)}")


def verdict_rows(rows: Any) -> list[VerdictRow]:
    """The verdict as :class:`VerdictRow` objects, each with an id (its "N." prefix or position, if none)."""
    out = []
    for i, r in enumerate(rows or []):
        if isinstance(r, dict):
            r = VerdictRow(**r)
        if not isinstance(r, VerdictRow):
            raise TypeError(f"verdict must return VerdictRow objects, got {type(r).__name__}")
        if not r.id:
            numbered = _NUMBERED.match(r.claim)  # "4b. max_r ..." -> id "4b", short "max_r ..."
            r = dataclasses.replace(r, id=numbered.group(1), short=r.short or numbered.group(2)) if numbered \
                else dataclasses.replace(r, id=str(i + 1))
        out.append(r)
    return out


_NUMBERED = re.compile(r"^(\w{1,3})\. (.+)$")


def wait_for_device() -> None:
    """Block until every computation JAX has dispatched has finished (errors ignored).

    Called when a run is interrupted, so that the process never leaves while XLA threads still
    compute into buffers the interpreter is tearing down (that ended in a segmentation fault).
    """
    for a in jax.live_arrays():
        try:
            a.block_until_ready()
        except Exception:  # noqa: BLE001 - a failed or deleted buffer: nothing left running
            pass


def compute_batch(exp: Experiment, cells: list[dict[str, Any]], mesh: Any = None) -> list[dict]:
    """The arrays of ``cells`` (one batch: ``exp.run_batch``, or ``exp.run`` for one cell), on the host.

    Pure given the cells: their keys come from :func:`sims.core.planning.cell_key`, so a worker of a
    Dask sweep calls exactly this and gets the bits of the single process.
    """
    keys = [cell_key(c) for c in cells]
    placement = {"mesh": mesh} if exp.shardable else {}
    if exp.run_batch is not None:
        outs = list(exp.run_batch(cells, keys=jnp.stack(keys), **placement))
        if len(outs) != len(cells):
            raise RuntimeError(f"{exp.name}.run_batch returned {len(outs)} results for {len(cells)} cells")
    else:
        if len(cells) != 1:
            raise RuntimeError(f"{exp.name} has no run_batch but was given {len(cells)} cells")
        outs = [exp.run(cells[0], key=keys[0], **placement)]
    # Pull everything to the host so the timing covers the computation.
    return [jax.device_get(o) for o in outs]


@dataclasses.dataclass
class Done:
    """A computed batch handed back by a backend: its call index, cells, arrays and times."""

    index: int
    cells: tuple[PlannedCell, ...]
    outs: list[dict]
    started: str
    finished: str
    call_s: float


class SerialBackend:
    """Computes each submitted batch in this process, one at a time (``capacity`` 1)."""

    capacity = 1

    def __init__(self, p: Plan):
        self.p = p
        self.queue: list[tuple[int, tuple[PlannedCell, ...]]] = []

    @property
    def busy(self) -> int:
        return len(self.queue)

    def submit(self, index: int, members: tuple[PlannedCell, ...]) -> None:
        self.queue.append((index, members))

    def next_done(self, timeout: float) -> list[Done]:
        index, members = self.queue.pop(0)
        started, t0 = provenance.now(), time.perf_counter()
        try:
            outs = compute_batch(self.p.exp, [m.cell for m in members], self.p.mesh)
        except KeyboardInterrupt:
            wait_for_device()
            raise
        except Exception as e:
            add_cells_note(e, self.p.exp, members)
            raise
        return [Done(index, members, outs, started, provenance.now(), time.perf_counter() - t0)]

    def close(self, *, cancel: bool) -> None:
        self.queue.clear()


def _claim(p: Plan, members: tuple[PlannedCell, ...], held: dict[str, claims.Claim]):
    """``(mine, others, finished)``: the members this process now holds, those another holds, and
    those found finished (by another process) once claimed."""
    mine, others, finished = [], [], []
    for m in members:
        c = claims.claim(p.out, p.experiment, m.cell_id)
        if c is None:
            others.append(m)
        elif not p.force and not m.problem and cellfile.cell_done(m.path, m.cell_id):
            claims.release(c)  # finished by another process between the plan and now
            finished.append(m)
        else:
            held[m.cell_id] = c
            mine.append(m)
    return tuple(mine), others, finished


def execute(p: Plan, *, on_event: Callable[[Event], None] | None = None, backend: Any = None,
            poll_s: float = 0.5) -> RunResult:
    """Compute the plan's pending cells, store them, judge the verdict and write the manifest.

    Each cell is claimed before it is computed (:mod:`sims.core.claims`): a cell another process
    holds is skipped, then waited for once this run's own cells are done (and computed here if its
    holder dies), so two runs into one folder compute each cell once.

    Args:
        p: a plan from :func:`sims.core.planning.plan`.
        on_event: called with each event (:class:`Started`, :class:`BatchStarted`,
            :class:`CellFinished`, :class:`BatchFinished`, :class:`Waiting`, :class:`Finished`).
        backend: where the batches are computed: None for this process (:class:`SerialBackend`),
            or e.g. :class:`sims.core.dask_backend.DaskBackend`; files are written here either way.
        poll_s: seconds between two looks at cells held by others.

    Returns:
        A :class:`RunResult` (verdict rows, computed and reused ids, every cell's arrays).

    Raises:
        WouldNotFit: the plan does not fit (nothing is computed).
        StoreError: nothing can be written under ``p.out`` (before any work).
        KeyboardInterrupt: propagates once in-flight device work has finished (or, on a cluster,
            pending cells are cancelled); every cell finished before it is on disk, complete, and
            a rerun resumes from there.
    """
    emit = on_event or (lambda event: None)
    if not p.fits:
        raise WouldNotFit(p.message, needed=p.peak_bytes or 0, available=p.available or 0)
    exp = p.exp
    store.check_writable(p.out)
    started, t0 = provenance.now(), time.perf_counter()
    prov = provenance.provenance(p.precision)
    prov["device"]["used"] = p.devices
    store.clean_stale_temps(store.cells_dir(p.out, exp.name))
    claims.clean_stale(p.out, exp.name)  # a killed writer's claims (its unfinished cells are computed below)
    backend = SerialBackend(p) if backend is None else backend
    computed: list[str] = []
    total, calls = p.n_pending, len(p.batches)
    queue = deque(tuple(p.cells[i] for i in b) for b in p.batches)
    held: dict[str, claims.Claim] = {}
    waiting: list[PlannedCell] = []
    done, index = 0, 0
    emit(Started(p, total, calls))
    try:
        while queue or waiting or backend.busy:
            while queue and backend.busy < backend.capacity:
                mine, others, finished = _claim(p, queue.popleft(), held)
                waiting += others
                done += len(finished)
                if mine:
                    emit(BatchStarted(index, max(calls, index + 1), mine, done, total))
                    backend.submit(index, mine)
                    index += 1
            if backend.busy:
                finished = backend.next_done(poll_s)
                for d in finished:
                    done = _store_batch(p, d, prov, held, computed, done, total, emit)
                    emit(BatchFinished(d.index, max(calls, index), len(d.cells), done, total, d.call_s,
                                       time.perf_counter() - t0))
                if not finished:
                    emit(Waiting((), done, total))  # a safe point while a cluster computes
                continue
            if waiting:
                still = []
                for pc in waiting:
                    if cellfile.cell_done(pc.path, pc.cell_id):
                        done += 1
                    elif claims.is_stale(claims.claim_path(p.out, p.experiment, pc.cell_id)) or \
                            not claims.claim_path(p.out, p.experiment, pc.cell_id).exists():
                        queue.append((pc,))  # its holder is gone: compute it here
                    else:
                        still.append(pc)
                waiting = still
                if waiting and not queue:
                    emit(Waiting(tuple(waiting), done, total))
                    time.sleep(poll_s)
    except BaseException:  # Ctrl-C, or a cell that failed: cancel what is pending
        backend.close(cancel=True)
        raise
    finally:
        for c in held.values():
            claims.release(c)
    backend.close(cancel=False)

    results = record.load_results(p)
    rows = verdict_rows(exp.verdict(p.config, results))
    m = record.manifest(p, rows, computed, provenance=prov, started=started, finished=provenance.now(),
                        elapsed_s=time.perf_counter() - t0)
    mpath = record.write_manifest(p, m)
    mine = set(computed)
    reused = [pc.cell_id for pc in p.cells if pc.cell_id not in mine]
    result = RunResult(p.run_id, mpath, rows, m["passed"], computed, reused, results, p)
    emit(Finished(result))
    return result


def _store_batch(p: Plan, d: Done, prov: dict, held: dict, computed: list[str], done: int, total: int,
                 emit: Callable[[Event], None]) -> int:
    """Write the cells of a computed batch, release their claims; return the new ``done`` count."""
    for m, arrays in zip(d.cells, d.outs):
        meta = record.cell_meta(p, m, provenance=prov, started=d.started, finished=d.finished,
                                elapsed_s=d.call_s / len(d.cells), batch_size=len(d.cells))
        cellfile.write_cell(m.path, arrays, meta)
        claims.release(held.pop(m.cell_id))
        computed.append(m.cell_id)
        done += 1
        emit(CellFinished(m, done, total))
    return done


def run(
    exp: Experiment,
    config: Any,
    *,
    out: str | os.PathLike = "results",
    precision: str = "float64",
    force: bool = False,
    devices: Any = None,
    on_event: Callable[[Event], None] | None = None,
) -> RunResult:
    """``execute(plan(exp, config, ...), on_event=on_event)``: run ``exp`` at ``config``.

    Finished cells under ``out`` are reused, not recomputed.  The engine draws nothing: pass
    ``on_event`` to follow the run.

    Raises:
        WouldNotFit: before any work, if a cell cannot fit in memory.
        InputError: bad input (see :func:`sims.core.planning.plan`).
    """
    p = plan(exp, config, out=out, precision=precision, force=force, devices=devices)
    return execute(p, on_event=on_event)
