"""``sims figures`` (and ``python -m figures``): build every figure from saved results.

For each figure the run it reads is, in order: the stored run of the requested config (the
experiment's defaults, or :data:`figures.presets.SMALL` with ``--small``), else the newest
stored run of that experiment, else -- unless ``--no-run`` -- a fresh run of the requested
config (through :func:`sims.core.runner.run`, into the same results folder).  The figure scripts
themselves only ever read results.

Examples::

    sims figures                                  # all figures, default sizes, into figures/out/
    sims figures --small --results /tmp/results   # small simulations where results are missing
    sims figures --only convergence --only kernel --format png --dpi 150 --out docs/img
    python -m figures --no-run --venue icml --width column
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import List, Optional

import typer

from figures import common, data, presets, style
from figures.registry import FIGURES
from sims.core import store
from sims.cli.app import EXIT_CRASH, EXIT_USAGE, register_subcommand

__all__ = ["ensure_run", "ensure_results", "build_all", "app"]


def _experiment(figure: str) -> str:
    return common.module(figure).EXPERIMENT


def ensure_run(results: str | Path, experiment: str, *, small: bool = False, precision: str = "float64",
               run_missing: bool = True, progress: bool = False, console=None) -> str | None:
    """The run id a figure of ``experiment`` should read, running the simulation when none is stored.

    Returns None when nothing is stored and ``run_missing`` is False.
    """
    from sims.core import runner
    from sims.core.experiment import get

    exp = get(experiment)
    cfg = presets.config(experiment, small=small)
    rid = store.run_id(exp.name, dataclasses.asdict(cfg), precision)
    if store.manifest_path(results, exp.name, rid).is_file():
        return rid
    try:
        return data.load_run(results, exp.name).run_id
    except data.MissingResults:
        pass
    if not run_missing:
        return None
    res = runner.run(exp, cfg, out=results, precision=precision, progress=progress, console=console)
    return res.run_id


def ensure_results(results: str | Path, experiments=None, *, small: bool = False, precision: str = "float64",
                   progress: bool = False, companions: bool = False) -> dict[str, str]:
    """Run (or reuse, cell by cell) the requested config of each experiment; ``{experiment: run_id}``.

    Unlike :func:`ensure_run` this always goes through the runner for the requested config, so
    a folder holding other runs still gets exactly these.  ``companions`` (with ``small``) also
    runs :data:`figures.presets.COMPANIONS`, the extra small runs the notebooks show.
    """
    from sims.core import runner
    from sims.core.experiment import get

    names = experiments or sorted({_experiment(f) for f in FIGURES})
    out = {}
    for name in names:
        exp = get(name)
        out[name] = runner.run(exp, presets.config(name, small=small), out=results, precision=precision,
                               progress=progress).run_id
        for cfg in presets.companion_configs(name) if (small and companions) else []:
            runner.run(exp, cfg, out=results, precision=precision, progress=progress)
    return out


def build_all(results: str | Path = "results", out: str | Path = common.DEFAULT_OUT, *, only=None,
              small: bool = False, run_missing: bool = True, venue: str = "acl", width: str | None = None,
              formats=style.FORMATS, dpi: int = style.PNG_DPI, precision: str = "float64", progress: bool = False,
              console=None, echo=None) -> dict[str, list[Path]]:
    """Build the figures named in ``only`` (default: all of :data:`figures.FIGURES`)."""
    names = [n.replace("-", "_") for n in (only or FIGURES)]
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        raise ValueError(f"unknown figure(s) {unknown}; known: {', '.join(FIGURES)}")
    built: dict[str, list[Path]] = {}
    for name in names:
        exp = _experiment(name)
        rid = ensure_run(results, exp, small=small, precision=precision, run_missing=run_missing,
                         progress=progress, console=console)
        if rid is None:
            raise data.MissingResults(f"figure {name!r} needs a stored {exp!r} run under {results}/ "
                                      f"(drop --no-run to run it, or `sims run {exp}`)")
        built[name] = common.build(name, results, out, run=rid, venue=venue, width=width, formats=formats, dpi=dpi)
        if echo is not None:
            echo(f"{name}: " + ", ".join(str(p) for p in built[name]) + f"  (run {rid})")
    return built


def app(prog_name: str = "sims figures") -> typer.Typer:
    a = typer.Typer(help="Build the figures from saved results (figures/out/ by default).",
                    no_args_is_help=False, add_completion=False, pretty_exceptions_show_locals=False)

    @a.callback(invoke_without_command=True, epilog="Examples: sims figures --small;  "
                "sims figures --only convergence --only kernel --format png --dpi 150 --out docs/img")
    def build(
        ctx: typer.Context,
        results: Path = typer.Option(Path("results"), "--results", help="Results folder to read (and run into)."),
        out: Path = typer.Option(common.DEFAULT_OUT, "--out", help="Output folder for the figure files."),
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
        import jax

        err = typer.echo
        bad_format = any(f not in ("pdf", "png", "svg") for f in formats or ())
        if venue not in style.VENUES or (width is not None and width not in style.WIDTHS) or bad_format \
                or precision not in ("float64", "float32") or not 20 <= dpi <= 1200:
            err("error: bad --venue, --width, --format, --dpi or --precision", err=True)
            raise typer.Exit(EXIT_USAGE)
        prev = bool(jax.config.jax_enable_x64)
        jax.config.update("jax_enable_x64", precision == "float64")
        try:
            build_all(results, out, only=only, small=small, run_missing=run_missing, venue=venue, width=width,
                      formats=tuple(formats or style.FORMATS), dpi=dpi, precision=precision, progress=True,
                      echo=typer.echo)
        except (ValueError, data.MissingResults) as e:
            err(f"error: {e}", err=True)
            raise typer.Exit(EXIT_USAGE) from None
        except Exception as e:  # noqa: BLE001
            err(f"error: figures crashed: {type(e).__name__}: {e}", err=True)
            raise typer.Exit(EXIT_CRASH) from None
        finally:
            jax.config.update("jax_enable_x64", prev)

    @a.command("list")
    def list_() -> None:
        """List the figures and the experiment each reads."""
        for name in FIGURES:
            mod = common.module(name)
            typer.echo(f"{name:22s} reads {mod.EXPERIMENT:22s} {(mod.__doc__ or '').splitlines()[0]}")

    return a


register_subcommand("figures", app, help="Build the figures from saved results (runs missing simulations first).")
