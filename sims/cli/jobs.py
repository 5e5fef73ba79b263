"""Run several experiments at once, each in its own process (``sims reproduce --jobs N``).

The engine runs one experiment's cells in one process (or on Dask, ``sims run --workers``).
A reproduction runs eight independent experiments; on a machine with two or more cores it
saves wall time to run them side by side.  Each child process plans and executes one experiment
exactly as ``sims run`` would (same run id, same cells, same numbers: a cell's key comes from its
id, not from the process) and writes its manifest; the parent only schedules and reads the
manifests back.

Scheduling: the experiments that measure time (:attr:`sims.report.catalog.Entry.timed`) run
alone, after the others, so that no other process shares the machine with them; the others
start longest first (:attr:`~sims.report.catalog.Entry.cost`).  An experiment whose cells are
all stored runs in this process (it only recomputes its verdict).

Ctrl-C: the children run in their own process groups, so a Ctrl-C at the terminal reaches the
parent only; it passes one SIGINT to each child, which stops after its call in flight as
``sims run`` does and keeps its finished cells (a second Ctrl-C is passed on too: stop now); the
parent waits for them and raises ``KeyboardInterrupt``.
"""

from __future__ import annotations

import dataclasses
import importlib
import multiprocessing
import os
import signal
import traceback
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Callable

import sims.core as engine
from sims import runtime
from sims.experiments import get

__all__ = ["Job", "Outcome", "default_jobs", "run_jobs"]

_POLL_S = 0.5


@dataclasses.dataclass(frozen=True)
class Job:
    """One experiment to run in a child: the module that registers it, its config overrides."""

    experiment: str
    module: str  # imported in the child before the experiment is looked up (it registers it)
    overrides: dict[str, Any]
    out: str
    precision: str


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a child reports: ``kind`` is "done", "memory" (would not fit), "crash" or "interrupted"."""

    experiment: str
    kind: str
    manifest: str = ""
    run_id: str = ""
    rows: int = 0
    failed: int = 0
    computed: int = 0
    reused: int = 0
    message: str = ""

    @classmethod
    def of_result(cls, experiment: str, res: Any) -> "Outcome":
        """A "done" outcome from what :func:`sims.core.execute` returned."""
        return cls(experiment, "done", str(res.manifest_path), res.run_id, len(res.rows),
                   sum(r.failed for r in res.rows), len(res.computed), len(res.reused))

    @classmethod
    def of_error(cls, experiment: str, e: Exception) -> "Outcome":
        """A "memory" outcome (:class:`sims.core.WouldNotFit`: its message) or a "crash" (the traceback)."""
        if isinstance(e, engine.WouldNotFit):
            return cls(experiment, "memory", message=str(e))
        return cls(experiment, "crash", message="".join(traceback.format_exception(e)))


def default_jobs() -> int:
    """Two experiments at once where the machine has two cores or more, else one."""
    return min(2, os.cpu_count() or 1)


def _child(conn: Connection, job: Job) -> None:
    """The child's work: plan and execute one experiment, send an :class:`Outcome` back."""
    # Its own process group: a Ctrl-C at the terminal reaches the parent only, which passes one on.
    if hasattr(os, "setpgid"):  # POSIX; elsewhere the terminal's Ctrl-C reaches the children too
        os.setpgid(0, 0)
    # A SIGINT ignored by the parent's shell (nohup, a background job) is inherited as ignored; here
    # only the parent sends it, to stop this child at a safe point, so it must be heard.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    outcome: Outcome
    try:
        if job.module:
            importlib.import_module(job.module)
        with runtime.context(job.precision, compile_cache="default", signals=True):
            exp = get(job.experiment)
            plan = engine.plan(exp, exp.config(**job.overrides), out=Path(job.out), precision=job.precision)
            res = engine.execute(plan, on_event=runtime.STOP)
        outcome = Outcome.of_result(job.experiment, res)
    except KeyboardInterrupt:
        outcome = Outcome(job.experiment, "interrupted")
    except Exception as e:  # noqa: BLE001 - reported to the parent, which goes on with the others
        outcome = Outcome.of_error(job.experiment, e)
    conn.send(outcome)
    conn.close()


def run_jobs(jobs: list[Job], *, workers: int, on_start: Callable[[Job], None] = lambda j: None,
             on_done: Callable[[Outcome], None] = lambda o: None) -> list[Outcome]:
    """Run ``jobs`` in at most ``workers`` child processes at a time, in the order given.

    Returns the outcomes in the order the jobs finished.  A child that dies without reporting
    (killed, out of memory) gives a "crash" outcome with its exit code.

    Raises:
        KeyboardInterrupt: a stop was requested (:data:`sims.runtime.STOP`); the running children
            were asked to stop after their call in flight and were waited for.
    """
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: JAX is not fork-safe
    queue = list(jobs)
    running: dict[Connection, tuple[Job, Any]] = {}
    outcomes: list[Outcome] = []
    try:
        while queue or running:
            while queue and len(running) < workers:
                job = queue.pop(0)
                recv, send = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_child, args=(send, job), name=f"sims-{job.experiment}")
                proc.start()
                send.close()
                running[recv] = (job, proc)
                on_start(job)
            for conn in wait(list(running), timeout=_POLL_S):
                job, proc = running.pop(conn)
                try:
                    outcome = conn.recv()
                except EOFError:
                    proc.join()
                    outcome = Outcome(job.experiment, "crash",
                                      message=f"the process ended with exit code {proc.exitcode} without a result")
                proc.join()
                outcomes.append(outcome)
                on_done(outcome)
                if outcome.kind == "interrupted":
                    raise KeyboardInterrupt
            runtime.STOP.check()
    except KeyboardInterrupt:
        _stop([proc for _, proc in running.values()])
        raise
    return outcomes


def _stop(procs: list[Any]) -> None:
    """Ask the children to stop (one SIGINT each: after the call in flight) and wait for them.

    Another Ctrl-C while waiting is passed on too (a second SIGINT stops a child at once).
    """
    wanted, sent = 1, 0
    while any(p.is_alive() for p in procs):
        try:
            while sent < wanted:
                for p in procs:
                    if p.is_alive():
                        try:
                            os.kill(p.pid, signal.SIGINT)
                        except ProcessLookupError:
                            pass
                sent += 1
            for p in procs:
                p.join(_POLL_S)
        except KeyboardInterrupt:
            wanted += 1
