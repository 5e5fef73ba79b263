"""``sims figures`` (also ``python -m figures``): run the simulations the figures need, then build them.

What it does, in order:

1. checks every option (exit 2 and one line on a bad one, before any work);
2. finds, for each figure, exactly the run of the requested configuration (the defaults, or
   :data:`sims.experiments.presets.SMALL` with ``--small``) at the requested precision
   (:func:`figures.build.select_run`);
3. with ``--run`` (the default) prints the plan of the missing runs (experiment, size, cells
   to compute, memory, estimated time) and runs them, stopping at the next safe point on
   Ctrl-C (exit 130; finished cells are kept, rerun to resume);
4. builds every figure whose run is stored and lists those it could not make (exit 2 if any).

With ``--no-run`` step 3 is skipped.  ``--from RUN`` builds the figures of one stored run instead
(any config, e.g. after ``sims run lazy-prefix --quick``) and runs nothing.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any, List, Optional

import typer

import sims.core as engine
from figures import FIGURES, ON_REQUEST, common, style
from figures import build as figbuild
from sims import experiments, runtime
from sims.cli import render
from sims.cli.process import EXIT_INTERRUPTED, EXIT_MEMORY, EXIT_OK, EXIT_USAGE
from sims.cli.render import fail
from sims.core import cellfile, store
from sims.experiments import presets

__all__ = ["app", "figures_command", "estimate_seconds"]

_EXAMPLES = ("Examples: sims figures --small;  sims figures --only convergence --no-run;  "
             "sims figures --from lazy-prefix-0123 --format png;  "
             "sims figures --only convergence --only kernel --format png --dpi 150 --out docs/img")


def figures_command(
    ctx: typer.Context,
    results: Path = typer.Option(Path("results"), "--results", help="Results folder to read (and run into)."),
    out: Path = typer.Option(common.DEFAULT_OUT, "--out", help="Output folder for the figure files."),
    only: Optional[List[str]] = typer.Option(None, "--only", help="Only this figure (repeatable): "
                                             f"{', '.join(FIGURES + ON_REQUEST)}."),
    small: bool = typer.Option(False, "--small", help="The small configs (presets.SMALL) instead of the defaults."),
    run_missing: bool = typer.Option(True, "--run/--no-run", help="Run the simulations whose results are missing "
                                     "(--no-run: make the figures that can be made, list the others)."),
    venue: str = typer.Option("acl", "--venue", help=f"Page size: {', '.join(style.VENUES)}."),
    width: Optional[str] = typer.Option(None, "--width", help="column or full (default: each figure's own)."),
    formats: Optional[List[str]] = typer.Option(None, "--format", help="pdf, png or svg (repeatable; "
                                                "default pdf and png)."),
    dpi: int = typer.Option(style.PNG_DPI, "--dpi", help="PNG resolution."),
    precision: str = typer.Option("float64", "--precision", help="Precision of the runs to read (and run)."),
    from_run: Optional[str] = typer.Option(None, "--from", metavar="RUN", help="Build from this stored run (id, id "
                                           "prefix or manifest path) instead: its experiment's figures; runs nothing."),
    compile_cache: Optional[str] = typer.Option(None, "--compile-cache", metavar="DIR|off", help="JAX's persistent "
                                                "compilation cache for the runs (default: $PREFIX_NTK_COMPILE_CACHE, "
                                                "else ~/.cache/prefix-ntk/jax)."),
) -> None:
    """Build the figures from stored runs; run the missing ones first (the plan is printed before)."""
    if ctx.invoked_subcommand is not None:
        return
    fmts = tuple(formats or style.FORMATS)
    try:
        figbuild.check_options(venue=venue, width=width, formats=fmts, dpi=dpi, precision=precision)
        needed = figbuild.experiments_of(only)
        rid = None
        if from_run is not None:
            rid, only = figbuild.figures_of_run(results, from_run, only)
    except ValueError as e:
        raise fail(str(e), EXIT_USAGE) from None
    missing = [e for e in needed if figbuild.select_run(results, e, small=small, precision=precision) is None]
    if run_missing and missing and rid is None:
        try:
            with runtime.context(precision, compile_cache=compile_cache or "default", signals=True):
                _run(results, missing, small=small, precision=precision)
        except OSError as e:
            raise fail(f"--compile-cache: {e.strerror or e}", EXIT_USAGE) from None
    built, not_made = figbuild.build_available(results, out, only=only, small=small, venue=venue, width=width,
                                               formats=fmts, dpi=dpi, precision=precision, echo=typer.echo,
                                               run=rid)
    for name, why in not_made.items():
        typer.echo(f"not made: {name}: {why}", err=True)
    if not_made:
        raise fail(f"{len(not_made)} of {len(built) + len(not_made)} figure(s) not made", EXIT_USAGE)
    raise typer.Exit(EXIT_OK)


def _run(results: Path, names: list[str], *, small: bool, precision: str) -> None:
    """Plan every missing run, print the plans, then execute them one after the other."""
    console = render.err_console()
    try:
        runtime.STOP.check()  # a Ctrl-C while the modules were imported
        plans = [engine.plan(experiments.get(n), presets.config(n, small=small), out=results, precision=precision)
                 for n in names]
        size = "small config (presets.SMALL)" if small else "default config"
        console.print(f"[bold]sims figures will run {len(plans)} experiment(s)[/bold] at the {size}, "
                      f"precision {precision}, into {results}/ (Ctrl-C stops after the call in flight; rerun to "
                      "resume):")
        for p in plans:
            render.print_plan(console, p, full=False)
            console.print(f"  time: {_describe_estimate(p)}")
        for p in plans:
            if not p.fits:
                raise fail(f"{p.experiment} would not fit in memory: {p.message}", EXIT_MEMORY)
        for p in plans:
            runtime.STOP.check()
            progress = render.Progress()
            try:
                res = engine.execute(p, on_event=_both(progress, runtime.STOP))
            finally:
                progress.close()
            console.print(f"{p.experiment}: {len(res.computed)} cell(s) computed, {len(res.reused)} reused; "
                          f"run {res.run_id}")
    except KeyboardInterrupt:
        raise fail("interrupted; finished cells are saved, rerun the same command to resume", EXIT_INTERRUPTED) \
            from None


def _both(*handlers: Any):
    def on_event(event: Any) -> None:
        for h in handlers:
            h(event)

    return on_event


def estimate_seconds(p: Any, *, limit: int = 2000) -> tuple[float, int]:
    """Seconds the plan's pending cells took before, from stored cells of the same size; and how many were timed.

    A pending cell is timed by the median ``elapsed_s`` of the stored cells of its experiment
    that differ from it only in the seed and were computed at the same precision (read from at
    most ``limit`` cell files); cells with no such twin are not timed.
    """
    def key(cell: dict) -> str:
        return json.dumps({k: v for k, v in cell.items() if k != "seed"}, sort_keys=True, default=str)

    seen: dict[str, list[float]] = {}
    folder = store.cells_dir(p.out, p.experiment)
    for path in sorted(folder.glob("*.npz"))[:limit] if folder.is_dir() else []:
        meta = cellfile.read_cell_meta(path)
        if meta and isinstance(meta.get("cell"), dict) and isinstance(meta.get("elapsed_s"), (int, float)):
            seen.setdefault(key(meta["cell"]), []).append(float(meta["elapsed_s"]))
    total, timed = 0.0, 0
    for pc in p.pending:
        times = seen.get(key(pc.cell))
        if times:
            total += statistics.median(times)
            timed += 1
    return total, timed


def _describe_estimate(p: Any) -> str:
    n = len(p.pending)
    if n == 0:
        return "nothing to run"
    seconds, timed = estimate_seconds(p)
    if timed == 0:
        return f"no estimate: none of the {n} cell(s) to run has a stored twin (same size, other seed) to time"
    text = f"about {render.clock(seconds)} for {timed} of {n} cell(s) (from stored cells of the same size)"
    return text + ("" if timed == n else f"; {n - timed} cell(s) not timed")


def list_command() -> None:
    """List the figures and the experiment each reads."""
    for name, experiment, summary in figbuild.describe():
        extra = "" if name in FIGURES else "  [only when named]"
        typer.echo(f"{name:24s} reads {experiment:24s} {summary}{extra}")


def app() -> typer.Typer:
    """The ``sims figures`` command group: build (the callback) and ``list``."""
    a = typer.Typer(no_args_is_help=False, add_completion=False, pretty_exceptions_show_locals=False)

    a.callback(invoke_without_command=True, epilog=_EXAMPLES)(figures_command)
    a.command("list")(list_command)
    return a


def main(argv: list[str] | None = None, prog_name: str = "python -m figures") -> None:
    """``python -m figures``: the same command as ``sims figures``."""
    with runtime.context(signals=True):
        app()(args=argv, prog_name=prog_name)
