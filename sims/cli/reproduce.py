"""``sims reproduce``: run every experiment of the README's claims table, then write the report.

The experiments and their sizes are :data:`sims.report.catalog.CATALOG` (``--quick``, the
default: the small preset, minutes on a laptop; ``--full``: the papers' sizes).  Each runs
through the engine like ``sims run``: finished cells are reused, so an interrupted reproduction
resumes where it stopped and a second one only writes the report.  It prints the plan (cells
stored and to run per experiment) before any work, then ends with ``sims report`` of exactly
these runs.

Exit codes: 0 no claim failed, 1 some claim failed, 2 bad usage, 3 an experiment would not fit
in memory, 4 an experiment crashed (the others still run and are reported), 130 interrupted.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from sims import runtime
from sims.cli import jobs as parallel
from sims.cli import render
from sims.cli import report as report_cli
from sims.cli.options import Precision
from sims.cli.process import EXIT_CRASH, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_MEMORY, EXIT_OK, EXIT_USAGE
from sims.cli.render import fail
import sims.core as engine
from sims.core import store
from sims.experiments import MODULES, get
from sims.report import catalog, collect

__all__ = ["command", "plans"]


def plans(names: list[str], size: str, *, out: Path, precision: str) -> list[engine.Plan]:
    """The plan of each named experiment at ``size`` (nothing runs)."""
    out_plans = []
    for name in names:
        exp = get(name)
        config = exp.config(**catalog.overrides(name, size))
        out_plans.append(engine.plan(exp, config, out=out, precision=precision))
    return out_plans


def command(
    full: Annotated[bool, typer.Option("--full/--quick", help="The papers' sizes (hours), or the quick ones "
                                                             "(the default: minutes).")] = False,
    only: Annotated[Optional[list[str]], typer.Option("--only", help="Only this experiment (repeatable).")] = None,
    out: Annotated[Path, typer.Option("--out", help="Results folder (reused cell by cell); the report goes "
                                                    "to OUT/report/.")] = Path("results"),
    precision: Annotated[Precision, typer.Option("--precision", help="Floating-point precision.")] = Precision.float64,
    no_figures: Annotated[bool, typer.Option("--no-figures", help="Leave the figures out of the report.")] = False,
    jobs: Annotated[Optional[int], typer.Option("--jobs", help="Experiments run at once, each in its own process "
                                                "(default: 2 on a machine with 2 or more cores, else 1). The "
                                                "timing experiment always runs alone.")] = None,
) -> None:
    """Run every experiment of the claims table (resumable), then write the report; exit 1 if a claim failed."""
    size = "full" if full else "quick"
    known = [e.experiment for e in catalog.CATALOG]
    names = list(dict.fromkeys(only)) if only else known
    bad = [n for n in names if n not in known]
    if bad:
        raise fail(f"unknown experiment(s) {', '.join(bad)} for --only; known: {', '.join(known)}", EXIT_USAGE)
    if jobs is None:
        jobs = parallel.default_jobs()
    if jobs < 1:
        raise fail(f"--jobs must be a positive integer, got {jobs}", EXIT_USAGE)
    try:
        store.check_writable(out)
    except store.StoreError as e:
        raise fail(str(e), EXIT_USAGE) from None
    t0 = time.perf_counter()
    # The run context (x64, Ctrl-C, compile cache from $PREFIX_NTK_COMPILE_CACHE), as `sims run`.
    with runtime.context(precision.value, compile_cache="default", signals=True):
        runs, code = _run_all(names, size, out, precision.value, jobs)
    console = Console(highlight=False)
    if runs:
        flags = " --full" if full else ""
        flags += "".join(f" --only {n}" for n in (only or []))
        paths, summary = report_cli.write_report(out, runs, figures=not no_figures, meta={
            "command": f"sims reproduce{flags}", "wall_s": time.perf_counter() - t0, "size": size})
        report_cli.print_summary(console, summary, paths)
        if code == EXIT_OK and not summary["passed"]:
            code = EXIT_FAILED
    console.print(f"wall time {time.perf_counter() - t0:.0f} s")
    raise typer.Exit(code)


def _run_all(names: list[str], size: str, out: Path, precision: str, jobs: int) -> tuple[list[collect.Run], int]:
    err = render.err_console()
    try:
        ps = plans(names, size, out=out, precision=precision)
    except (ValueError, TypeError) as e:
        raise fail(f"bad size for {size}: {e}", EXIT_USAGE) from None
    err.print(f"[bold]reproduce ({size})[/bold]: {len(ps)} experiment(s) into {out}/")
    for p in ps:
        err.print(f"  {p.experiment:24s} {len(p.cells) - p.n_pending:4d} cell(s) stored, {p.n_pending:4d} to run")
    # With --jobs > 1, the experiments with cells to run (other than the timed ones) go to child
    # processes, longest first; the rest run here, in order, after them.
    side = [p for p in ps if jobs > 1 and p.n_pending and not _entry(p).timed]
    if len(side) < 2:
        side = []
    outcomes: dict[str, parallel.Outcome] = {}
    code = EXIT_OK
    if side:
        err.print(f"running {len(side)} experiment(s), {jobs} at a time, each in its own process; "
                  f"then {len(ps) - len(side)} here")
        side.sort(key=lambda p: -_entry(p).cost)
        todo = [parallel.Job(p.experiment, _module(p), catalog.overrides(p.experiment, size), str(out), precision)
                for p in side]
        try:
            for o in parallel.run_jobs(todo, workers=jobs, on_start=lambda j: err.print(f"  started {j.experiment}"),
                                       on_done=lambda o: _print_outcome(err, o)):
                outcomes[o.experiment] = o
        except KeyboardInterrupt:
            raise fail("interrupted; finished cells are saved, rerun the same command to resume", EXIT_INTERRUPTED) \
                from None
    runs = []
    for p in ps:
        o = outcomes.get(p.experiment) or _execute_here(p, err)
        if o.kind == "memory":
            code = max(code, EXIT_MEMORY)
        elif o.kind == "crash":
            code = EXIT_CRASH
        elif o.kind == "done":
            runs.append(collect.Run(Path(o.manifest), store.read_manifest(Path(o.manifest))))
    return runs, code


def _entry(p: engine.Plan) -> catalog.Entry:
    return catalog.entry(p.experiment) or catalog.Entry(p.experiment, "other", "", "", "")


def _module(p: engine.Plan) -> str:
    """The module a child imports so that the experiment is registered (none for the project's own)."""
    return "" if p.experiment in MODULES else p.exp.run.__module__


def _execute_here(p: engine.Plan, err: Console) -> parallel.Outcome:
    """Run one plan in this process, with the progress bar; exit on Ctrl-C."""
    progress = render.Progress()

    def on_event(event, progress=progress) -> None:  # noqa: ANN001
        progress(event)
        runtime.STOP(event)

    try:
        runtime.STOP.check()
        res = engine.execute(p, on_event=on_event)
    except KeyboardInterrupt:
        raise fail("interrupted; finished cells are saved, rerun the same command to resume", EXIT_INTERRUPTED) \
            from None
    except Exception as e:  # noqa: BLE001 - one crashed experiment does not stop the others
        o = parallel.Outcome.of_error(p.experiment, e)
    else:
        o = parallel.Outcome.of_result(p.experiment, res)
    finally:
        progress.close()
    _print_outcome(err, o)
    return o


def _print_outcome(err: Console, o: parallel.Outcome) -> None:
    if o.kind == "done":
        err.print(f"{o.experiment}: {o.rows} row(s), {o.failed} failed; {o.computed} cell(s) computed, "
                  f"{o.reused} reused (run {o.run_id})")
    elif o.kind == "memory":
        err.print(f"[bold red]{escape(o.experiment)} would not fit in memory:[/bold red] {escape(o.message)}")
    elif o.kind == "crash":
        err.print(escape(o.message))
        err.print(f"[bold red]{escape(o.experiment)} crashed[/bold red]")
