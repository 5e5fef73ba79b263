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
from typing import Any, Callable

import jax
import jax.numpy as jnp

from sims.core import provenance, record, store
from sims.core.experiment import Experiment, VerdictRow
from sims.core.planning import Plan, PlannedCell, WouldNotFit, cell_key, plan, short_cell

__all__ = [
    "Started",
    "BatchStarted",
    "CellFinished",
    "BatchFinished",
    "Finished",
    "Event",
    "RunResult",
    "execute",
    "run",
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
class Finished:
    """The verdict is judged and the manifest written."""

    result: "RunResult"


Event = Started | BatchStarted | CellFinished | BatchFinished | Finished


@dataclasses.dataclass
class RunResult:
    run_id: str
    manifest_path: Any
    rows: list[VerdictRow]
    passed: bool
    computed: list[str]
    reused: list[str]
    results: list[tuple[dict, dict]]
    plan: Plan


# ----------------------------------------------------------------------------- running


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


def _compute_batch(exp: Experiment, cells: list[dict[str, Any]], mesh: Any = None) -> list[dict]:
    keys = [cell_key(c) for c in cells]
    placement = {"mesh": mesh} if exp.shardable else {}
    if exp.run_batch is not None:
        outs = list(exp.run_batch(cells, keys=jnp.stack(keys), **placement))
        if len(outs) != len(cells):
            raise RuntimeError(f"{exp.name}.run_batch returned {len(outs)} results for {len(cells)} cells")
    else:
        outs = [exp.run(cells[0], key=keys[0], **placement)]
    # Pull everything to the host so the timing covers the computation.
    return [jax.device_get(o) for o in outs]


def execute(p: Plan, *, on_event: Callable[[Event], None] | None = None) -> RunResult:
    """Compute the plan's pending cells, store them, judge the verdict and write the manifest.

    Args:
        p: a plan from :func:`sims.core.planning.plan`.
        on_event: called with each event (:class:`Started`, :class:`BatchStarted`,
            :class:`CellFinished`, :class:`BatchFinished`, :class:`Finished`), in order.

    Returns:
        A :class:`RunResult` (verdict rows, computed and reused ids, every cell's arrays).

    Raises:
        WouldNotFit: the plan does not fit (nothing is computed).
        StoreError: nothing can be written under ``p.out`` (before any work).
        KeyboardInterrupt: propagates once in-flight device work has finished; every cell
            finished before it is on disk, complete, and a rerun resumes from there.
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
    computed: list[str] = []
    total, calls = p.n_pending, len(p.batches)
    emit(Started(p, total, calls))
    for index, batch in enumerate(p.batches):
        members = tuple(p.cells[i] for i in batch)
        emit(BatchStarted(index, calls, members, len(computed), total))
        b_start, tb = provenance.now(), time.perf_counter()
        try:
            outs = _compute_batch(exp, [m.cell for m in members], p.mesh)
        except KeyboardInterrupt:
            wait_for_device()
            raise
        except Exception as e:
            ids = ", ".join(m.cell_id for m in members)
            e.add_note(f"while running {exp.name} cell(s) {ids}: {short_cell(members[0].cell, 200)}")
            raise
        call_s = time.perf_counter() - tb
        b_end = provenance.now()
        for m, arrays in zip(members, outs):
            meta = record.cell_meta(p, m, provenance=prov, started=b_start, finished=b_end,
                                    elapsed_s=call_s / len(members), batch_size=len(members))
            store.write_cell(m.path, arrays, meta)
            computed.append(m.cell_id)
            emit(CellFinished(m, len(computed), total))
        emit(BatchFinished(index, calls, len(members), len(computed), total, call_s, time.perf_counter() - t0))

    results = record.load_results(p)
    rows = verdict_rows(exp.verdict(p.config, results))
    m = record.manifest(p, rows, computed, provenance=prov, started=started, finished=provenance.now(),
                        elapsed_s=time.perf_counter() - t0)
    mpath = record.write_manifest(p, m)
    done = set(computed)
    reused = [pc.cell_id for pc in p.cells if pc.cell_id not in done]
    result = RunResult(p.run_id, mpath, rows, m["passed"], computed, reused, results, p)
    emit(Finished(result))
    return result


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
