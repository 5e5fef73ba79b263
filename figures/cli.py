"""``python -m figures`` (and, through :func:`build_all`, ``sims figures``): build figures from saved results.

For each figure the run it reads is, in order: the stored run of the requested config (the
experiment's defaults, or :data:`figures.presets.SMALL` with ``--small``), else the newest
stored run of that experiment.  Figures never run simulations: when a run is missing the build
stops with a message naming the command that makes it (``sims figures`` runs the missing
simulations first, see :mod:`sims.cli.figures`).

Examples::

    python -m figures                                  # all figures, default sizes, into figures/out/
    python -m figures --small --results /tmp/results   # read the small-preset runs
    python -m figures --only convergence --only kernel --format png --dpi 150 --out docs/img
    python -m figures --venue icml --width column
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, List, Optional

import typer

from figures import common, data, presets, style
from figures.registry import FIGURES
from sims.core import store

__all__ = ["EXIT_USAGE", "EXIT_CRASH", "FORMATS", "experiments", "check_options", "select_run", "build_all",
           "main", "app", "list_figures"]

EXIT_USAGE, EXIT_CRASH = 2, 4
FORMATS = ("pdf", "png", "svg")
PRECISIONS = ("float64", "float32")
DPI_RANGE = (20, 1200)


def experiments(only=None) -> list[str]:
    """The experiments whose results the figures in ``only`` (default: all) read, in build order."""
    names = []
    for f in _figure_names(only):
        e = common.module(f).EXPERIMENT
        if e not in names:
            names.append(e)
    return names


def _figure_names(only) -> list[str]:
    names = [n.replace("-", "_") for n in (only or FIGURES)]
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        raise ValueError(f"unknown figure(s) {unknown} for --only; known: {', '.join(FIGURES)}")
    return names


def check_options(*, venue: str = "acl", width: str | None = None, formats=(), dpi: int = style.PNG_DPI,
                  precision: str = "float64") -> None:
    """Raise ``ValueError`` naming the first bad option and listing its valid values."""
    if venue not in style.VENUES:
        raise ValueError(f"--venue {venue!r} is not known; valid: {', '.join(sorted(style.VENUES))}")
    if width is not None and width not in style.WIDTHS:
        raise ValueError(f"--width {width!r} is not known; valid: {', '.join(style.WIDTHS)}")
    for f in formats or ():
        if f not in FORMATS:
            raise ValueError(f"--format {f!r} is not known; valid: {', '.join(FORMATS)}")
    if precision not in PRECISIONS:
        raise ValueError(f"--precision {precision!r} is not known; valid: {', '.join(PRECISIONS)}")
    if not DPI_RANGE[0] <= dpi <= DPI_RANGE[1]:
        raise ValueError(f"--dpi {dpi} is out of range; valid: {DPI_RANGE[0]} to {DPI_RANGE[1]}")


def select_run(results: str | Path, experiment: str, *, small: bool = False, precision: str = "float64") -> str | None:
    """The run id a figure of ``experiment`` should read, or None when nothing is stored."""
    from sims.experiments import get

    exp = get(experiment)
    cfg = presets.config(experiment, small=small)
    rid = store.run_id(exp.name, dataclasses.asdict(cfg), precision)
    if store.manifest_path(results, exp.name, rid).is_file():
        return rid
    try:
        return data.load_run(results, exp.name).run_id
    except data.MissingResults:
        return None


def build_all(results: str | Path = "results", out: str | Path = common.DEFAULT_OUT, *, only=None,
              small: bool = False, venue: str = "acl", width: str | None = None, formats=style.FORMATS,
              dpi: int = style.PNG_DPI, precision: str = "float64", echo: Callable[[str], None] | None = None,
              run_missing: bool = False) -> dict[str, list[Path]]:
    """Build the figures named in ``only`` (default: all of :data:`figures.FIGURES`) from stored runs.

    Args:
        results: the results folder to read.
        out: the folder the figure files go to.
        only: figure names (``-`` or ``_``); None for all.
        small: prefer the run of the small preset (:data:`figures.presets.SMALL`).
        venue, width, formats, dpi: page size and output (see :mod:`figures.style`).
        precision: the precision of the runs to prefer.
        echo: called with one line per figure built.
        run_missing: must be False (figures never run simulations: ``sims figures`` does).

    Returns:
        ``{figure: [paths written]}``.

    Raises:
        ValueError: a bad option (named, with its valid values).
        figures.data.MissingResults: a figure's run is not stored.
    """
    if run_missing:
        raise ValueError("figures never run simulations; use `sims figures` to run the missing ones first")
    check_options(venue=venue, width=width, formats=formats, dpi=dpi, precision=precision)
    built: dict[str, list[Path]] = {}
    for name in _figure_names(only):
        exp = common.module(name).EXPERIMENT
        rid = select_run(results, exp, small=small, precision=precision)
        if rid is None:
            raise data.MissingResults(f"figure {name!r} needs a stored {exp!r} run under {results}/ "
                                      f"(`sims figures` runs it, or `sims run {exp}`)")
        built[name] = common.build(name, results, out, run=rid, venue=venue, width=width, formats=formats, dpi=dpi)
        if echo is not None:
            echo(f"{name}: " + ", ".join(str(p) for p in built[name]) + f"  (run {rid})")
    return built


def main(results: Path = Path("results"), out: Path = common.DEFAULT_OUT, *, only=None, small: bool = False,
         venue: str = "acl", width: str | None = None, formats=None, dpi: int = style.PNG_DPI,
         precision: str = "float64") -> int:
    """Build the figures as the command line does; return its exit code (0, 2 bad option or missing run, 4)."""
    try:
        build_all(results, out, only=only, small=small, venue=venue, width=width,
                  formats=tuple(formats or style.FORMATS), dpi=dpi, precision=precision, echo=typer.echo)
    except (ValueError, data.MissingResults) as e:
        typer.echo(f"error: {e}", err=True)
        return EXIT_USAGE
    except Exception as e:  # noqa: BLE001
        typer.echo(f"error: figures crashed: {type(e).__name__}: {e}", err=True)
        return EXIT_CRASH
    return 0


def app(prog_name: str = "python -m figures") -> typer.Typer:
    """The ``python -m figures`` command (read-only: it never runs a simulation)."""
    a = typer.Typer(help="Build the figures from saved results (figures/out/ by default).",
                    no_args_is_help=False, add_completion=False, pretty_exceptions_show_locals=False)

    @a.callback(invoke_without_command=True, epilog="Examples: python -m figures --small;  "
                "python -m figures --only convergence --only kernel --format png --dpi 150 --out docs/img")
    def build(
        ctx: typer.Context,
        results: Path = typer.Option(Path("results"), "--results", help="Results folder to read."),
        out: Path = typer.Option(common.DEFAULT_OUT, "--out", help="Output folder for the figure files."),
        only: Optional[List[str]] = typer.Option(None, "--only", help=f"Only this figure (repeatable): "
                                                 f"{', '.join(FIGURES)}."),
        small: bool = typer.Option(False, "--small", help="Read the small-preset runs (presets.SMALL)."),
        venue: str = typer.Option("acl", "--venue", help=f"Page size: {', '.join(style.VENUES)}."),
        width: Optional[str] = typer.Option(None, "--width", help="column or full (default: each figure's own)."),
        formats: Optional[List[str]] = typer.Option(None, "--format", help="pdf, png or svg (repeatable; "
                                                    "default pdf and png)."),
        dpi: int = typer.Option(style.PNG_DPI, "--dpi", help="PNG resolution."),
        precision: str = typer.Option("float64", "--precision", help="Precision of the runs to read."),
    ) -> None:
        if ctx.invoked_subcommand is not None:
            return
        code = main(results, out, only=only, small=small, venue=venue, width=width, formats=formats, dpi=dpi,
                    precision=precision)
        raise typer.Exit(code)

    a.command("list")(list_figures)
    return a


def list_figures() -> None:
    """List the figures and the experiment each reads."""
    for name in FIGURES:
        mod = common.module(name)
        typer.echo(f"{name:22s} reads {mod.EXPERIMENT:22s} {(mod.__doc__ or '').splitlines()[0]}")
