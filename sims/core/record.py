"""What a run records beside its arrays: each cell's metadata and the run's manifest.

The metadata and the manifest are plain dicts built here from a :class:`sims.core.planning.Plan`;
:mod:`sims.core.cellfile` and :mod:`sims.core.store` write them (``cellfile.write_cell``, ``store.write_manifest``).  A
manifest holds the run id, the config, each cell's id and status (computed or reused), the
verdict rows (claim ids, short names and full statements), the memory plan and the provenance.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sims.core import cellfile, claims, store
from sims.core.experiment import VerdictRow
from sims.core.planning import Plan, PlannedCell, config_dict, key_seed

__all__ = ["cell_meta", "load_results", "manifest", "write_manifest"]


def cell_meta(p: Plan, pc: PlannedCell, *, provenance: dict[str, Any], started: str, finished: str,
              elapsed_s: float, batch_size: int) -> dict[str, Any]:
    """The metadata stored with one computed cell.

    Args:
        p: the run's plan.
        pc: the cell.
        provenance: :func:`sims.core.provenance.provenance` of the run.
        started, finished: ISO times of the call that computed the cell.
        elapsed_s: the call's wall time divided by the cells it computed.
        batch_size: how many cells that call computed.

    Returns:
        A JSON-able dict (``experiment``, ``cell_id``, ``cell``, ``seed``, ``key_seed``, ...).
    """
    return {
        "experiment": p.experiment,
        "cell_id": pc.cell_id,
        "cell": pc.cell,
        "seed": pc.cell.get("seed"),
        "key_seed": key_seed(pc.cell),
        "dtype": p.precision,
        "run_id": p.run_id,
        "config": config_dict(p.config),
        "provenance": provenance,
        "started": started,
        "finished": finished,
        "elapsed_s": elapsed_s,
        "batch_size": batch_size,
        "computed_by": {"host": claims.HOST, "pid": os.getpid()},
    }


def load_results(p: Plan) -> list[tuple[dict, dict]]:
    """Every cell of the plan read back from its file: ``[(cell, arrays), ...]`` in plan order.

    Raises:
        StoreError: a file is missing, corrupt, or holds another cell.
    """
    results = []
    for pc in p.cells:
        arrays, meta = cellfile.read_cell(pc.path)
        if meta.get("cell_id") != pc.cell_id or meta.get("cell") != pc.cell:
            raise store.StoreError(f"{pc.path} does not hold cell {pc.cell_id} ({pc.cell}); delete it, rerun")
        results.append((pc.cell, arrays))
    return results


def manifest(p: Plan, rows: list[VerdictRow], computed: list[str], *, provenance: dict[str, Any],
             started: str, finished: str, elapsed_s: float) -> dict[str, Any]:
    """The run's manifest (a JSON-able dict); ``computed`` lists the ids computed by this run."""
    done = set(computed)
    return {
        "run_id": p.run_id,
        "experiment": p.experiment,
        "summary": p.exp.summary,
        "precision": p.precision,
        "config": config_dict(p.config),
        "out": str(p.out),
        "cell_ids": [pc.cell_id for pc in p.cells],
        "cells": [
            {"cell_id": pc.cell_id, "cell": pc.cell, "status": "computed" if pc.cell_id in done else "reused",
             **({"replaced": pc.problem} if pc.problem else {})}  # a damaged file this run recomputed
            for pc in p.cells
        ],
        "counts": {"cells": len(p.cells), "computed": len(done), "reused": len(p.cells) - len(done)},
        "verdict": [r.as_dict() for r in rows],
        "passed": not any(r.failed for r in rows),  # undecided rows do not fail a run
        "undecided": sum(r.status == "undecided" for r in rows),
        "memory": {"peak_estimate_bytes": p.peak_bytes, "available_bytes": p.available, "where": p.available_where},
        "provenance": provenance,
        "started": started,
        "finished": finished,
        "elapsed_s": elapsed_s,
    }


def write_manifest(p: Plan, m: dict[str, Any]) -> Path:
    """Write ``m`` as ``OUT/<experiment>/runs/<run_id>.json`` (atomically); return its path."""
    return store.write_manifest(p.out, p.experiment, p.run_id, m)
