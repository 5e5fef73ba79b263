"""Run an experiment: expand its cells, skip finished ones, compute the rest, judge, record.

    result = runner.run(get("toy"), ToyConfig(), out="results", precision="float64")
    result.rows      # the verdict rows;  result.passed  # all claims held

The runner never flips global JAX state: for ``precision="float64"`` the caller must have
enabled ``jax_enable_x64`` (the CLI does), otherwise :class:`theory.validation.InputError`.

Each cell is stamped with ``cell["dtype"] = precision`` before its id is taken, so float32 and
float64 results never share a file; its PRNG key comes from the id of the cell *without* that
stamp (see :func:`cell_key`), so both precisions draw the same random numbers.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp

from sims.host import devices as _devices
from sims.core import provenance
from sims.core import store
from sims.core.experiment import Experiment, VerdictRow
from theory.validation import InputError, check_dtype

__all__ = [
    "PRECISIONS",
    "WouldNotFit",
    "PlannedCell",
    "Plan",
    "RunResult",
    "key_seed",
    "cell_key",
    "available_bytes",
    "format_bytes",
    "plan",
    "run",
]

PRECISIONS = ("float64", "float32")
_STAMPS = ("dtype",)  # keys the runner adds to every cell


class WouldNotFit(RuntimeError):
    """The run needs more memory than the device has; raised before any work is done."""

    def __init__(self, message: str, *, needed: int, available: int):
        super().__init__(message)
        self.needed = needed
        self.available = available


@dataclasses.dataclass
class PlannedCell:
    cell: dict[str, Any]
    cell_id: str
    path: Path
    done: bool
    est_bytes: int | None


@dataclasses.dataclass
class Plan:
    experiment: str
    config: Any
    precision: str
    out: Path
    run_id: str
    cells: list[PlannedCell]
    batches: list[list[int]]  # indices into ``cells`` of the pending cells, one list per call
    peak_bytes: int | None  # largest estimated batch (None: the experiment gives no estimate)
    available: int | None
    available_where: str
    fits: bool
    message: str = ""
    mesh: Any = None  # the row mesh of a shardable experiment (None: one device)

    @property
    def devices(self) -> int:
        return _devices.mesh_size(self.mesh)

    @property
    def pending(self) -> list[PlannedCell]:
        return [c for c in self.cells if not c.done]


@dataclasses.dataclass
class RunResult:
    run_id: str
    manifest_path: Path
    rows: list[VerdictRow]
    passed: bool
    computed: list[str]
    reused: list[str]
    results: list[tuple[dict, dict]]
    plan: Plan


# ----------------------------------------------------------------------------- keys and memory


def key_seed(cell: dict[str, Any]) -> int:
    """The 32-bit integer the cell's key starts from: a hash of the cell id without run stamps."""
    bare = {k: v for k, v in cell.items() if k not in _STAMPS}
    return int(store.digest(store.normalize_cell(bare))[:8], 16)


def cell_key(cell: dict[str, Any]) -> jax.Array:
    """The cell's PRNG key: ``fold_in(key(key_seed(cell)), cell["seed"])``; never its sweep position."""
    seed = cell.get("seed", 0)
    seed = int(seed) if isinstance(seed, int) and not isinstance(seed, bool) else 0
    return jax.random.fold_in(jax.random.key(key_seed(cell)), seed % (1 << 32))


def format_bytes(n: int | None) -> str:
    if n is None:
        return "unknown"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def available_bytes() -> tuple[int | None, str]:
    """Memory a run may use on the default device, and where the figure comes from."""
    dev = jax.devices()[0]
    stats = None
    try:
        stats = dev.memory_stats()
    except Exception:  # noqa: BLE001 - backends without stats
        stats = None
    if stats and "bytes_limit" in stats:
        free = int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
        return free, f"{dev.platform} {getattr(dev, 'device_kind', '')}".strip()
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "host RAM (MemAvailable)"
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "host RAM"
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return None, "unknown"


# ----------------------------------------------------------------------------- planning


def _config_dict(config: Any) -> dict[str, Any]:
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise InputError(f"config must be a dataclass instance, got {type(config).__name__}")
    return dataclasses.asdict(config)


def _stamped_cells(exp: Experiment, config: Any, precision: str) -> list[dict[str, Any]]:
    raw = exp.cells(config)
    cells, seen = [], set()
    for c in raw:
        c = store.normalize_cell(c)
        if "dtype" in c and c["dtype"] != precision:
            raise InputError(f"cell {c} asks for dtype {c['dtype']!r} but the precision is {precision!r}")
        c["dtype"] = precision
        cid = store.cell_id(c)
        if cid not in seen:  # the same cell listed twice (e.g. --m 1e3 --m 1000) runs once
            seen.add(cid)
            cells.append(c)
    return cells


def _group_key(exp: Experiment, cell: dict[str, Any]) -> str:
    if exp.batch_key is not None:
        k = exp.batch_key(cell)
    else:
        k = {n: v for n, v in cell.items() if n != "seed"}
    try:
        return store.canonical_json(k)
    except store.StoreError:
        return repr(k)


def plan(
    exp: Experiment,
    config: Any,
    *,
    out: str | os.PathLike = "results",
    precision: str = "float64",
    force: bool = False,
    devices: Any = None,
) -> Plan:
    """Everything the run would do, without doing any of it (and without writing anything).

    ``devices``: how many local devices split each cell's rows (see :mod:`sims.host.devices`);
    None means all of them for a shardable experiment, one otherwise.
    """
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    mesh = _devices.run_mesh(devices, experiment=exp.name, shardable=exp.shardable)
    per_device = {"devices": _devices.mesh_size(mesh)} if exp.shardable else {}
    out = Path(out)
    cfg = _config_dict(config)
    cells = _stamped_cells(exp, config, precision)
    planned = []
    for c in cells:
        cid = store.cell_id(c)
        path = store.cell_path(out, exp.name, cid)
        done = (not force) and store.cell_done(path, cid)
        est = None
        if exp.estimate_bytes is not None:
            est = int(exp.estimate_bytes(c, **per_device))
        planned.append(PlannedCell(c, cid, path, done, est))

    available, where = available_bytes()
    pending = [i for i, pc in enumerate(planned) if not pc.done]
    groups: dict[str, list[int]] = {}
    if exp.run_batch is not None:
        for i in pending:
            groups.setdefault(_group_key(exp, planned[i].cell), []).append(i)
    else:
        for i in pending:
            groups[str(i)] = [i]

    fits, message, peak = True, "", None
    batches: list[list[int]] = []
    for members in groups.values():
        ests = [planned[i].est_bytes for i in members]
        if any(e is None for e in ests):
            batches.append(members)
            continue
        worst = max(range(len(members)), key=lambda j: ests[j])
        if available is not None and ests[worst] > available:
            fits = False
            pc = planned[members[worst]]
            message = (
                f"cell {pc.cell_id} ({_short(pc.cell)}) needs about {format_bytes(ests[worst])} "
                f"but only {format_bytes(available)} is available ({where}); "
                "shrink the sizes or run on a device with more memory"
                + (f", or split the rows over more devices (now {_devices.mesh_size(mesh)} of "
                   f"{jax.local_device_count()} local; --devices)" if exp.shardable else "")
            )
            peak = max(peak or 0, ests[worst])
            continue
        # Split the group into chunks whose summed estimate fits (a vmapped batch holds them all).
        chunk, total = [], 0
        for i, e in zip(members, ests):
            if chunk and available is not None and total + e > available:
                batches.append(chunk)
                peak = max(peak or 0, total)
                chunk, total = [], 0
            chunk.append(i)
            total += e
        if chunk:
            batches.append(chunk)
            peak = max(peak or 0, total)
    rid = store.run_id(exp.name, cfg, precision)
    return Plan(
        exp.name, config, precision, out, rid, planned, batches, peak, available, where, fits, message, mesh
    )


def _short(cell: dict[str, Any], limit: int = 60) -> str:
    text = " ".join(f"{k}={v}" for k, v in cell.items() if k not in _STAMPS)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ----------------------------------------------------------------------------- running


def _as_rows(rows: Any) -> list[VerdictRow]:
    out = []
    for r in rows or []:
        if isinstance(r, VerdictRow):
            out.append(r)
        elif isinstance(r, dict):
            out.append(VerdictRow(**r))
        else:
            raise TypeError(f"verdict must return VerdictRow objects, got {type(r).__name__}")
    return out


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


def run(
    exp: Experiment,
    config: Any,
    *,
    out: str | os.PathLike = "results",
    precision: str = "float64",
    force: bool = False,
    progress: bool = True,
    console: Any = None,
    on_plan: Callable[[Plan], None] | None = None,
    devices: Any = None,
) -> RunResult:
    """Run ``exp`` at ``config``; finished cells under ``out`` are reused, not recomputed.

    Raises :class:`WouldNotFit` before any work if a cell cannot fit in memory, and
    :class:`theory.validation.InputError` on bad input.  ``KeyboardInterrupt`` propagates;
    every cell finished before it is on disk, complete, and a rerun resumes from there.
    """
    check_dtype("precision", precision)
    started = provenance.now()
    t0 = time.perf_counter()
    p = plan(exp, config, out=out, precision=precision, force=force, devices=devices)
    if on_plan is not None:
        on_plan(p)
    if not p.fits:
        raise WouldNotFit(p.message, needed=p.peak_bytes or 0, available=p.available or 0)

    prov = provenance.provenance(precision)
    prov["device"]["used"] = p.devices
    cfg = _config_dict(config)
    store.clean_stale_temps(store.cells_dir(p.out, exp.name))
    computed: list[str] = []

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    n_pending = sum(len(b) for b in p.batches)
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[cell]}"),
        console=console,
        disable=not progress or n_pending == 0,
        transient=False,
    )
    with bar:
        task = bar.add_task(exp.name, total=n_pending, cell="")
        for batch in p.batches:
            members = [p.cells[i] for i in batch]
            more = f" (+{len(members) - 1})" if len(members) > 1 else ""
            bar.update(task, cell=_short(members[0].cell, 30) + more)
            b_start, tb = provenance.now(), time.perf_counter()
            try:
                outs = _compute_batch(exp, [m.cell for m in members], p.mesh)
            except BaseException as e:
                if isinstance(e, Exception):
                    ids = ", ".join(m.cell_id for m in members)
                    e.add_note(f"while running {exp.name} cell(s) {ids}: {_short(members[0].cell, 200)}")
                raise
            elapsed = time.perf_counter() - tb
            b_end = provenance.now()
            for m, arrays in zip(members, outs):
                meta = {
                    "experiment": exp.name,
                    "cell_id": m.cell_id,
                    "cell": m.cell,
                    "seed": m.cell.get("seed"),
                    "key_seed": key_seed(m.cell),
                    "dtype": precision,
                    "run_id": p.run_id,
                    "config": cfg,
                    "provenance": prov,
                    "started": b_start,
                    "finished": b_end,
                    "elapsed_s": elapsed / len(members),
                    "batch_size": len(members),
                }
                store.write_cell(m.path, arrays, meta)
                computed.append(m.cell_id)
            bar.advance(task, len(members))

    results = []
    for pc in p.cells:
        arrays, meta = store.read_cell(pc.path)
        if meta.get("cell_id") != pc.cell_id or meta.get("cell") != pc.cell:
            raise store.StoreError(f"{pc.path} does not hold cell {pc.cell_id} ({pc.cell}); delete it, rerun")
        results.append((pc.cell, arrays))
    rows = _as_rows(exp.verdict(config, results))
    passed = not any(r.failed for r in rows)  # undecided rows do not fail a run
    done = set(computed)
    manifest = {
        "run_id": p.run_id,
        "experiment": exp.name,
        "summary": exp.summary,
        "precision": precision,
        "config": cfg,
        "out": str(p.out),
        "cell_ids": [pc.cell_id for pc in p.cells],
        "cells": [
            {"cell_id": pc.cell_id, "cell": pc.cell, "status": "computed" if pc.cell_id in done else "reused"}
            for pc in p.cells
        ],
        "counts": {"cells": len(p.cells), "computed": len(computed), "reused": len(p.cells) - len(computed)},
        "verdict": [r.as_dict() for r in rows],
        "passed": passed,
        "undecided": sum(r.status == "undecided" for r in rows),
        "memory": {
            "peak_estimate_bytes": p.peak_bytes,
            "available_bytes": p.available,
            "where": p.available_where,
        },
        "provenance": prov,
        "started": started,
        "finished": provenance.now(),
        "elapsed_s": time.perf_counter() - t0,
    }
    mpath = store.write_manifest(p.out, exp.name, p.run_id, manifest)
    reused = [pc.cell_id for pc in p.cells if pc.cell_id not in done]
    return RunResult(p.run_id, mpath, rows, passed, computed, reused, results, p)
