"""``sims report [RUN...]``: the reproduction report, from stored results alone.

It reads run manifests (the named runs, or the newest run of every experiment under ``--out``),
draws each run's figures from its stored cells (the figure modules of :mod:`figures`, plus
:mod:`figures.verdict`, the verdict's own numbers), and writes ``<out>/report/index.html``
(self-contained), ``report.md`` and ``verdicts.json`` (:mod:`sims.report.build`).  It never runs
a simulation and never judges again: every status is the stored verdict's.

Exit codes: 0 no claim failed, 1 some claim failed, 2 bad usage (no such run, nothing stored).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape

from figures import common as figures_common
from figures import data as figures_data
from figures import style
from figures import verdict as verdict_figure
from figures import FIGURES
from sims.cli.process import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from sims.cli.render import fail
from sims.core import provenance, store
from sims.report import build, collect

__all__ = ["HELP", "DPI", "draw_figures", "write_report", "command"]

HELP = "Write the report (index.html, report.md, verdicts.json) from stored runs."
DPI = 110  # PNG resolution of the embedded figures (about 700 px across at full width)


def draw_figures(results: Path, run: collect.Run) -> tuple[list[build.Figure], list[str]]:
    """The run's figures as PNG bytes, each with the verdict rows its panels draw
    (:func:`figures.style.panel_rows`), and a note for each figure that could not be drawn."""
    figs, notes = [], []
    for name in FIGURES:
        mod = figures_common.module(name)
        if mod.EXPERIMENT != run.experiment:
            continue
        try:
            loaded = mod.load(results, run.run_id) if hasattr(mod, "load") else \
                figures_data.load_run(results, run.experiment, run.run_id)
            with style.context():
                fig = mod.plot(loaded, venue="acl", width=mod.DEFAULT_WIDTH)
            figs.append(build.Figure(f"{run.experiment}-{mod.NAME}", f"Figure {mod.NAME}: "
                                     f"{(mod.__doc__ or '').strip().splitlines()[0]}",
                                     style.render(fig, "png", dpi=DPI), panels=style.panel_rows(fig)))
        except Exception as e:  # noqa: BLE001 - a figure that cannot be drawn is reported, not fatal
            notes.append(f"figure {mod.NAME} could not be drawn from this run: {type(e).__name__}: {e}")
    with style.context():
        fig = verdict_figure.plot_rows(run.manifest.get("verdict") or [])
    if fig is not None:
        figs.append(build.Figure(f"{run.experiment}-verdict", f"Verdict of {run.experiment}: each estimate with its "
                                 "interval against the prediction (from the stored verdict, not refitted)",
                                 style.render(fig, "png", dpi=DPI), panels=style.panel_rows(fig)))
    return figs, notes


def write_report(results: Path, runs: list[collect.Run], *, meta: dict[str, Any], figures: bool = True,
                 out: Path | None = None) -> tuple[dict[str, Path], dict[str, Any]]:
    """Write the report of ``runs`` into ``out`` (default ``results/report``); return the paths and
    the summary."""
    out = out or Path(results) / "report"
    records = collect.claims(runs, results)
    drawn = {r.run_id: draw_figures(results, r) for r in runs} if figures else {}
    meta = {"generated": provenance.now(), "revision": provenance.git_info()["revision"], "command": "",
            "wall_s": None, **meta}
    paths = build.write(runs, records, figures={k: v[0] for k, v in drawn.items()},
                        notes={k: v[1] for k, v in drawn.items()}, meta=meta, out=out)
    return paths, collect.summary(records)


def print_summary(console: Console, summary: dict[str, Any], paths: dict[str, Path]) -> None:
    """The summary counts and the files written, on the terminal."""
    for g in summary["groups"].values():
        c, k = g["claims"], g["controls"]
        console.print(f"{escape(g['title'][:60])}: claims {c['pass']} pass, {c['fail']} fail, {c['undecided']} undecided; "
                      f"controls {k['pass']} caught, {k['fail']} missed, {k['undecided']} undecided")
    for f in summary["failed"]:
        console.print(f"[bold red]failed[/bold red] {escape(f['experiment'])} {escape(str(f['id']))}: {escape(f['claim'])}")
    console.print("report: " + ", ".join(str(p) for p in paths.values()))


def command(
    runs: Annotated[Optional[list[str]], typer.Argument(help="Run ids, unique prefixes or manifest paths "
                                                            "(default: the newest run of every experiment).")] = None,
    out: Annotated[Path, typer.Option("--out", help="Results folder to read; the report goes to OUT/report/.")] = Path("results"),
    no_figures: Annotated[bool, typer.Option("--no-figures", help="Leave the figures out (faster).")] = False,
) -> None:
    """Write the report (index.html, report.md, verdicts.json) from stored runs; exit 1 if a claim failed."""
    t0 = time.perf_counter()
    console = Console(highlight=False)
    try:
        chosen = [collect.load(out, r) for r in runs] if runs else collect.latest(out)
    except store.StoreError as e:
        raise fail(str(e), EXIT_USAGE) from None
    if not chosen:
        raise fail(f"no stored run under {out}/ (run `sims reproduce` or `sims run NAME` first)", EXIT_USAGE)
    paths, summary = write_report(out, chosen, figures=not no_figures,
                                  meta={"command": "sims report " + " ".join(runs or []), "wall_s": None})
    print_summary(console, summary, paths)
    console.print(f"({time.perf_counter() - t0:.1f} s)")
    raise typer.Exit(EXIT_OK if summary["passed"] else EXIT_FAILED)
