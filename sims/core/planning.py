"""Plan a run: expand the experiment's cells, name them, find the stored ones, batch the rest.

    p = plan(get("toy"), ToyConfig(), out="results", precision="float64")
    p.cells, p.pending, p.batches, p.fits      # everything the run would do; nothing written

A plan is a plain value: the CLI prints it (``sims run NAME --dry-run``) and
:func:`sims.core.execution.execute` carries it out.

Each cell is stamped with ``cell["dtype"] = precision`` before its id is taken, so float32 and
float64 results never share a file; its PRNG key comes from the id of the cell *without* that
stamp (see :func:`cell_key`), so both precisions get the same key (JAX still draws different numbers
from one key in float32 and float64).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import jax

from sims.core import cellfile, checks, store
from sims.core.experiment import Experiment
from sims.host import devices as _devices
from sims.runtime import PRECISIONS
from sims.host import memory as _memory
from theory.validation import InputError, check_dtype

__all__ = [
    "PRECISIONS",
    "WouldNotFit",
    "PlannedCell",
    "Plan",
    "key_seed",
    "cell_key",
    "config_dict",
    "short_cell",
    "plan",
]

_STAMPS = ("dtype",)  # keys the planner adds to every cell


class WouldNotFit(RuntimeError):
    """The run needs more memory than the device has; raised before any work is done."""

    def __init__(self, message: str, *, needed: int, available: int):
        super().__init__(message)
        self.needed = needed
        self.available = available


@dataclasses.dataclass
class PlannedCell:
    """One cell of a plan: the stamped cell, its id, its result file, whether it is stored.

    ``problem`` says why a file at ``path`` is not reused (unreadable, checksum mismatch, another
    cell): the cell is then recomputed, or the run stopped under ``--strict``.
    """

    cell: dict[str, Any]
    cell_id: str
    path: Path
    done: bool
    est_bytes: int | None
    problem: str = ""


@dataclasses.dataclass
class Plan:
    """Everything a run would do: built by :func:`plan`, carried out by ``execute``."""

    exp: Experiment
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
    force: bool = False  # recompute stored cells too

    @property
    def experiment(self) -> str:
        """The experiment's name."""
        return self.exp.name

    @property
    def devices(self) -> int:
        return _devices.mesh_size(self.mesh)

    @property
    def pending(self) -> list[PlannedCell]:
        return [c for c in self.cells if not c.done]

    @property
    def damaged(self) -> list[PlannedCell]:
        """Cells whose stored file exists but cannot be reused (see :attr:`PlannedCell.problem`)."""
        return [c for c in self.cells if c.problem]

    @property
    def n_pending(self) -> int:
        return sum(len(b) for b in self.batches)


# ----------------------------------------------------------------------------- keys


def key_seed(cell: dict[str, Any]) -> int:
    """The 32-bit integer the cell's key starts from: a hash of the cell id without run stamps."""
    bare = {k: v for k, v in cell.items() if k not in _STAMPS}
    return int(store.digest(store.normalize_cell(bare))[:8], 16)


def cell_key(cell: dict[str, Any]) -> jax.Array:
    """The cell's PRNG key: ``fold_in(key(key_seed(cell)), cell["seed"])``; never its sweep position."""
    seed = cell.get("seed", 0)
    seed = int(seed) if isinstance(seed, int) and not isinstance(seed, bool) else 0
    return jax.random.fold_in(jax.random.key(key_seed(cell)), seed % (1 << 32))


# ----------------------------------------------------------------------------- planning


def config_dict(config: Any) -> dict[str, Any]:
    """``dataclasses.asdict(config)``; ``InputError`` unless ``config`` is a dataclass instance."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise InputError(f"config must be a dataclass instance, got {type(config).__name__}")
    return dataclasses.asdict(config)


def short_cell(cell: dict[str, Any], limit: int = 60) -> str:
    """``"k=v k=v"`` of a cell without its run stamps, cut to ``limit`` characters."""
    text = " ".join(f"{k}={v}" for k, v in cell.items() if k not in _STAMPS)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _stamped_cells(exp: Experiment, config: Any, precision: str) -> list[dict[str, Any]]:
    cells, seen = [], set()
    for c in exp.cells(config):
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
    k = exp.batch_key(cell) if exp.batch_key is not None else {n: v for n, v in cell.items() if n != "seed"}
    try:
        return store.canonical_json(k)
    except store.StoreError:
        return repr(k)


def _batches(exp, planned, available, where, mesh):
    """Group the pending cells into calls that fit ``available``: ``(batches, peak, fits, message)``."""
    pending = [i for i, pc in enumerate(planned) if not pc.done]
    groups: dict[str, list[int]] = {}
    for i in pending:
        key = _group_key(exp, planned[i].cell) if exp.run_batch is not None else str(i)
        groups.setdefault(key, []).append(i)
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
            fmt = _memory.format_bytes
            message = (
                f"cell {pc.cell_id} ({short_cell(pc.cell)}) needs about {fmt(ests[worst])} "
                f"but only {fmt(available)} is available ({where}); "
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
    return batches, peak, fits, message


def plan(
    exp: Experiment,
    config: Any,
    *,
    out: str | os.PathLike = "results",
    precision: str = "float64",
    force: bool = False,
    devices: Any = None,
    memory: tuple[int | None, str] | None = None,
) -> Plan:
    """Everything the run would do, without doing any of it (and without writing anything).

    Args:
        exp: the experiment.
        config: an instance of ``exp.config``.
        out: the results folder.
        precision: ``"float64"`` (needs ``jax_enable_x64``) or ``"float32"``.
        force: plan to recompute stored cells too.  Otherwise each stored cell is read and its
            checksum verified: a damaged one is planned again, its reason in ``problem``.
        devices: how many local devices split each cell's rows (see :mod:`sims.host.devices`);
            None means all of them for a shardable experiment, one otherwise.
        memory: ``(bytes, where)`` the run may use; None probes
            :func:`sims.host.memory.available_bytes`.

    Returns:
        A :class:`Plan`; ``plan.fits`` is False (with ``plan.message``) when a cell cannot fit.

    Raises:
        InputError: bad precision, float64 without 64-bit JAX, a config that is not a
            dataclass or that :func:`sims.core.checks.check_config` refuses (a float not
            finite or out of range, too few distinct sizes), a bad device count, or cells
            that ask for another dtype.
    """
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    check_dtype("precision", precision)
    cfg = config_dict(config)
    mesh = _devices.run_mesh(devices, experiment=exp.name, shardable=exp.shardable)
    checks.check_config(exp, config)
    per_device = {"devices": _devices.mesh_size(mesh)} if exp.shardable else {}
    out = Path(out)
    planned = []
    for c in _stamped_cells(exp, config, precision):
        cid = store.cell_id(c)
        path = store.cell_path(out, exp.name, cid)
        problem = "missing" if force else cellfile.cell_problem(path, cid)
        est = int(exp.estimate_bytes(c, **per_device)) if exp.estimate_bytes is not None else None
        planned.append(PlannedCell(c, cid, path, problem is None, est, "" if problem in (None, "missing") else problem))
    available, where = _memory.available_bytes() if memory is None else memory
    batches, peak, fits, message = _batches(exp, planned, available, where, mesh)
    rid = store.run_id(exp.name, cfg, precision)
    return Plan(exp, config, precision, out, rid, planned, batches, peak, available, where, fits, message, mesh,
                force)
