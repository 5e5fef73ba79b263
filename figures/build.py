"""Building the figures from stored runs: which figures, which run each reads, and the build itself.

The one command is ``sims figures`` (:mod:`sims.cli.figures`; ``python -m figures`` is the same
command).  Each figure reads exactly the run of the requested configuration (the experiment's
defaults, or :data:`sims.experiments.presets.SMALL` with ``small``) at the requested precision:
:func:`select_run` returns that run's id or None, never another run of the same experiment.
Figures never run simulations; the command runs the missing ones first.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from figures import FIGURES, ON_REQUEST, common, data, style
from sims import experiments, runtime
from sims.core import store
from sims.experiments import presets

__all__ = ["FORMATS", "DPI_RANGE", "figure_names", "experiments_of", "check_options", "select_run",
           "build_available", "figures_of_run", "describe"]

FORMATS = ("pdf", "png", "svg")
DPI_RANGE = (20, 1200)


def figure_names(only=None) -> list[str]:
    """The figures in ``only`` (``-`` or ``_``; default :data:`figures.FIGURES`), checked.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    names = [n.replace("-", "_") for n in (only or FIGURES)]
    unknown = [n for n in names if n not in FIGURES + ON_REQUEST]
    if unknown:
        raise ValueError(f"unknown figure(s) {unknown} for --only; known: {', '.join(FIGURES + ON_REQUEST)}")
    return names


def _reads_a_run(name: str) -> bool:
    """Whether the figure reads a ``sims run`` (not a file with its own loader, like the benchmark suite)."""
    return not hasattr(common.module(name), "load")


def experiments_of(only=None) -> list[str]:
    """The experiments whose runs the figures in ``only`` read, in build order."""
    names: list[str] = []
    for f in figure_names(only):
        e = common.module(f).EXPERIMENT
        if _reads_a_run(f) and e not in names:
            names.append(e)
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
    if precision not in runtime.PRECISIONS:
        raise ValueError(f"--precision {precision!r} is not known; valid: {', '.join(runtime.PRECISIONS)}")
    if not DPI_RANGE[0] <= dpi <= DPI_RANGE[1]:
        raise ValueError(f"--dpi {dpi} is out of range; valid: {DPI_RANGE[0]} to {DPI_RANGE[1]}")


def select_run(results: str | Path, experiment: str, *, small: bool = False, precision: str = "float64") -> str | None:
    """The id of the stored run of ``experiment`` at the requested config and precision, or None.

    Only that run: a stored run of another config (a small one when the defaults are asked) is
    not a substitute.
    """
    cfg = presets.config(experiment, small=small)
    rid = store.run_id(experiment, dataclasses.asdict(cfg), precision)
    return rid if store.manifest_path(results, experiment, rid).is_file() else None


def build_available(results: str | Path, out: str | Path, *, only=None, small: bool = False, venue: str = "acl",
                    width: str | None = None, formats=style.FORMATS, dpi: int = style.PNG_DPI,
                    precision: str = "float64", echo: Callable[[str], None] | None = None,
                    run: str | None = None) -> tuple[dict[str, list[Path]], dict[str, str]]:
    """Build every figure in ``only`` (default all) whose results are stored; name the others.

    ``run`` (a stored run id, for figures of one experiment) replaces the requested config's run.

    Returns:
        ``({figure: [paths written]}, {figure not made: why})``.

    Raises:
        ValueError: a bad option (named, with its valid values).
    """
    check_options(venue=venue, width=width, formats=formats, dpi=dpi, precision=precision)
    built: dict[str, list[Path]] = {}
    missing: dict[str, str] = {}
    for name in figure_names(only):
        exp = common.module(name).EXPERIMENT
        rid = run
        if _reads_a_run(name) and rid is None:
            rid = select_run(results, exp, small=small, precision=precision)
            if rid is None:
                size = "small" if small else "default"
                missing[name] = (f"needs a stored {exp!r} run of the {size} config at {precision} under {results}/ "
                                 f"(`sims figures --only {name}{' --small' if small else ''}` runs it)")
                continue
        try:
            built[name] = common.build(name, results, out, run=rid, venue=venue, width=width, formats=formats,
                                       dpi=dpi)
        except data.MissingResults as e:
            missing[name] = str(e)
            continue
        if echo is not None:
            echo(f"{name}: " + ", ".join(str(p) for p in built[name]) + (f"  (run {rid})" if rid else ""))
    return built, missing


def figures_of_run(results: str | Path, run: str, only=None) -> tuple[str, list[str]]:
    """The stored run named by ``run`` (id, id prefix or manifest path) and the figures in ``only`` that read it.

    Default ``only``: every figure of that run's experiment.

    Raises:
        ValueError: no such run, or a figure in ``only`` reads another experiment.
    """
    try:
        manifest = store.read_manifest(store.find_manifest(results, run))
    except store.StoreError as e:
        raise ValueError(str(e)) from None
    exp = manifest.get("experiment")
    names = figure_names(only) if only else [f for f in FIGURES if common.module(f).EXPERIMENT == exp]
    other = [f for f in names if common.module(f).EXPERIMENT != exp]
    if other or not names:
        raise ValueError(f"--from {run}: a run of {exp!r}; no figure in {other or names or 'FIGURES'} reads it")
    return str(manifest.get("run_id")), names


def describe() -> list[tuple[str, str, str]]:
    """Every figure (the default ones, then those built only when named): (name, experiment, summary)."""
    rows = []
    for name in FIGURES + ON_REQUEST:
        mod = common.module(name)
        rows.append((name, mod.EXPERIMENT, (mod.__doc__ or "").splitlines()[0]))
    return rows
