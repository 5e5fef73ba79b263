"""What every figure shares: ``module`` (a figure by name), ``build`` (load a saved run, plot, save), ``forest``.

Each figure module defines ``EXPERIMENT`` (whose results it reads), ``NAME`` (the file stem),
``DEFAULT_WIDTH`` and ``plot(run, *, venue, width) -> Figure``; ``sims figures --only NAME``
builds one figure.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from figures import data, style

DEFAULT_OUT = Path("figures") / "out"


def module(name_or_module: str | ModuleType) -> ModuleType:
    """The figure module ``figures.<name>`` (``-`` or ``_``), imported."""
    if isinstance(name_or_module, ModuleType):
        return name_or_module
    name = name_or_module.replace("-", "_")
    return importlib.import_module(name if name.startswith("figures.") else f"figures.{name}")


def build(fig_module: str | ModuleType, results: str | Path = "results", out: str | Path = DEFAULT_OUT, *,
          run: str | None = None, venue: str = "acl", width: str | None = None,
          formats=style.FORMATS, dpi: int = style.PNG_DPI) -> list[Path]:
    """Load the saved run the figure needs, plot it and write ``out/<NAME>.<fmt>``; return the paths."""
    mod = module(fig_module)
    # A figure of saved benchmark files (not a sims run) brings its own loader.
    loaded = mod.load(results, run) if hasattr(mod, "load") else data.load_run(results, mod.EXPERIMENT, run)
    with style.context():
        fig = mod.plot(loaded, venue=venue, width=width or mod.DEFAULT_WIDTH)
    return style.save(fig, out, mod.NAME, formats=formats, dpi=dpi)


# ----------------------------------------------------------------------------- helpers


def forest(ax, rows, *, reference: float | None = None) -> None:
    """Verdict rows' slopes with their intervals, one row per claim (top to bottom).

    ``rows``: dicts with ``label`` and ``row`` (the stored verdict row: its ``estimate``,
    ``low``, ``high``, ``target``, ``status``, ``is_control``), drawn as they are: nothing is
    refitted or judged here.  The prediction is a black tick, the mark at the right the row's
    status (a control's pass means it was caught); a row without an estimate says why.
    """
    n = len(rows)
    style.shows(ax, *(r["row"] for r in rows))
    for i, r in enumerate(rows):
        y = n - 1 - i
        d = r["row"]
        control = bool(d.get("is_control"))
        color = style.CONTROL if control else style.PALETTE[0]
        if d.get("target") is not None:
            ax.plot([d["target"]], [y], marker="|", markersize=9, color=style.REFERENCE, linestyle="none", zorder=3)
        if d.get("estimate") is None:
            ax.text(0.02, y, str(d.get("measured") or "n/a"), color=color, va="center", fontsize=6.5,
                    transform=ax.get_yaxis_transform())
        else:
            ax.plot([d["low"], d["high"]], [y, y], color=color, linewidth=1.6, solid_capstyle="butt")
            ax.plot([d["estimate"]], [y], marker="o", color=color, markerfacecolor="white" if control else color)
        status = d.get("status") or "undecided"
        ax.text(1.0, y, " " + style.STATUS_MARK.get(status, "?"), transform=ax.get_yaxis_transform(), va="center",
                ha="left", color=style.STATUS_COLOR.get(status, "black"), fontsize=8, fontweight="bold", clip_on=False)
    if reference is not None:
        ax.axvline(reference, color=style.REFERENCE, linestyle="--", linewidth=0.8, zorder=0)
    ax.set_yticks(range(n))
    ax.set_yticklabels([r["label"] for r in reversed(rows)])
    ax.set_ylim(-0.6, n - 0.4)
    ax.spines["left"].set_visible(False)
    ax.tick_params(axis="y", length=0)
    ax.set_xlabel("log-log slope, 95% CI (from the verdict)")
