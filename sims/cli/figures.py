"""``sims figures``: run the simulations the figures need (when missing), then build the figures.

The figures themselves only read results (:mod:`figures.cli`, also ``python -m figures``); this
command is where the "run missing simulations first" logic lives.  For each figure's experiment
whose requested run (defaults, or the small preset with ``--small``) is not stored, and unless
``--no-run``, it runs that config through :func:`sims.experiments.presets.ensure_results`; then
it builds with :func:`figures.cli.build_all`.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from sims.cli import process, render
from sims.cli.process import EXIT_INTERRUPTED, EXIT_USAGE
from sims.cli.render import fail
from sims.host import compile_cache

__all__ = ["HELP", "app"]

HELP = "Build the figures from saved results (runs missing simulations first)."


def app() -> typer.Typer:
    """The ``sims figures`` command group."""
    from figures import cli as figures_cli
    from figures import common as figures_common
    from figures import style
    from figures.registry import FIGURES

    a = typer.Typer(help=HELP, no_args_is_help=False, add_completion=False, pretty_exceptions_show_locals=False)

    @a.callback(invoke_without_command=True, epilog="Examples: sims figures --small;  "
                "sims figures --only convergence --only kernel --format png --dpi 150 --out docs/img")
    def build(
        ctx: typer.Context,
        results: Path = typer.Option(Path("results"), "--results", help="Results folder to read (and run into)."),
        out: Path = typer.Option(figures_common.DEFAULT_OUT, "--out", help="Output folder for the figure files."),
        only: Optional[List[str]] = typer.Option(None, "--only", help=f"Only this figure (repeatable): "
                                                 f"{', '.join(FIGURES)}."),
        small: bool = typer.Option(False, "--small", help="Run missing simulations at small sizes (presets.SMALL)."),
        run_missing: bool = typer.Option(True, "--run/--no-run", help="Run the simulations whose results are missing."),
        venue: str = typer.Option("acl", "--venue", help=f"Page size: {', '.join(style.VENUES)}."),
        width: Optional[str] = typer.Option(None, "--width", help="column or full (default: each figure's own)."),
        formats: Optional[List[str]] = typer.Option(None, "--format", help="pdf, png or svg (repeatable; "
                                                    "default pdf and png)."),
        dpi: int = typer.Option(style.PNG_DPI, "--dpi", help="PNG resolution."),
        precision: str = typer.Option("float64", "--precision", help="Precision of simulations run here."),
    ) -> None:
        if ctx.invoked_subcommand is not None:
            return
        try:
            figures_cli.check_options(venue=venue, width=width, formats=formats or (), dpi=dpi, precision=precision)
            needed = figures_cli.experiments(only)
        except ValueError as e:
            raise fail(str(e), EXIT_USAGE) from None
        if run_missing:
            _run_missing(results, needed, small=small, precision=precision)
        raise typer.Exit(figures_cli.main(results, out, only=only, small=small, venue=venue, width=width,
                                          formats=formats, dpi=dpi, precision=precision))

    a.command("list")(figures_cli.list_figures)
    return a


def _run_missing(results: Path, names: list[str], *, small: bool, precision: str) -> None:
    import jax

    from figures import cli as figures_cli
    from sims.experiments import presets

    missing = [n for n in names if figures_cli.select_run(results, n, small=small, precision=precision) is None]
    if not missing:
        return
    prev = bool(jax.config.jax_enable_x64)
    jax.config.update("jax_enable_x64", precision == "float64")
    progress, previous = render.Progress(), process.install()

    def on_event(event) -> None:  # noqa: ANN001
        progress(event)
        process.STOP(event)

    try:
        with compile_cache.enabled(compile_cache.resolve(None)):  # $PREFIX_NTK_COMPILE_CACHE, like `sims run`
            presets.ensure_results(results, missing, small=small, precision=precision, on_event=on_event)
    except KeyboardInterrupt:
        raise fail("interrupted; finished cells are saved, rerun the same command to resume", EXIT_INTERRUPTED) \
            from None
    finally:
        progress.close()
        process.restore(previous)
        jax.config.update("jax_enable_x64", prev)
