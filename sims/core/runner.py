"""The run engine in one import, for notebooks and scripts: plan, execute, or both at once.

    from sims.core import runner
    result = runner.run(get("toy"), ToyConfig(), out="results")   # plan + execute
    result.rows, result.passed

The work lives in :mod:`sims.core.plan` (cells, ids, keys, batches that fit memory),
:mod:`sims.core.execute` (compute, store, judge, events) and :mod:`sims.core.record` (cell
metadata and manifest); this module only re-exports their public names.
"""

from sims.core.execute import (  # noqa: F401
    BatchFinished,
    BatchStarted,
    CellFinished,
    Event,
    Finished,
    RunResult,
    Started,
    Waiting,
    execute,
    run,
    wait_for_device,
)
from sims.core.plan import PRECISIONS, Plan, PlannedCell, WouldNotFit, cell_key, key_seed, plan  # noqa: F401
from sims.host.memory import available_bytes, format_bytes  # noqa: F401

__all__ = [
    "PRECISIONS", "WouldNotFit", "PlannedCell", "Plan", "RunResult", "key_seed", "cell_key", "available_bytes",
    "format_bytes", "plan", "execute", "run", "wait_for_device", "Event", "Started", "BatchStarted",
    "CellFinished", "BatchFinished", "Waiting", "Finished",
]
