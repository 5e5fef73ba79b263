"""The engine: plan, execute and run an experiment, and the events a run reports.

    import sims.core as engine
    p = engine.plan(exp, config, out="results", precision="float64")   # cells, ids, batches that fit
    result = engine.execute(p, on_event=print)                          # compute, store, judge
    result = engine.run(exp, config, out="results")                     # both at once
    result.rows, result.passed

The work lives in :mod:`sims.core.planning` (cells, ids, keys, batches that fit memory),
:mod:`sims.core.execution` (compute, store, judge, events), :mod:`sims.core.record` (cell metadata
and manifest), :mod:`sims.core.store` (files), :mod:`sims.core.experiment` (the experiment
contract and registry) and :mod:`sims.core.verdicts` (the verdict rules).  The names below are
loaded on first use: the contract and the store are read by commands that start without JAX
(``sims --help``, ``sims show``), and the planner and executor import JAX.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "PRECISIONS", "WouldNotFit", "PlannedCell", "Plan", "RunResult", "key_seed", "cell_key",
    "plan", "execute", "run", "wait_for_device",
    "Event", "Started", "BatchStarted", "CellFinished", "BatchFinished", "Waiting", "Finished",
]

_HOME = {
    **dict.fromkeys(("PRECISIONS", "WouldNotFit", "PlannedCell", "Plan", "key_seed", "cell_key", "plan"),
                    "sims.core.planning"),
    **dict.fromkeys(("RunResult", "execute", "run", "wait_for_device", "Event", "Started", "BatchStarted",
                     "CellFinished", "BatchFinished", "Waiting", "Finished"), "sims.core.execution"),
}

if TYPE_CHECKING:  # pragma: no cover
    from sims.core.execution import (BatchFinished, BatchStarted, CellFinished, Event, Finished, RunResult, Started,
                                     Waiting, execute, run, wait_for_device)
    from sims.core.planning import PRECISIONS, Plan, PlannedCell, WouldNotFit, cell_key, key_seed, plan


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module 'sims.core' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
