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
    """Slope estimates with their 95% CIs, one row per claim (top to bottom).

    ``rows``: dicts with ``label``, ``fit`` (a SlopeFit or None), ``predicted`` and ``control``
    (grey).  The mark at the right follows the verdicts' rule (:func:`figures.style.slope_ok`).
    """
    n = len(rows)
    for i, r in enumerate(rows):
        y = n - 1 - i
        color = style.CONTROL if r.get("control") else style.PALETTE[0]
        fit = r.get("fit")
        pred = r.get("predicted")
        if pred is not None:
            ax.plot([pred], [y], marker="|", markersize=9, color=style.REFERENCE, linestyle="none", zorder=3)
        if fit is None:
            ax.text(0.02, y, "diverged" if r.get("control") else "n/a", color=color, va="center", fontsize=6.5,
                    transform=ax.get_yaxis_transform())
            ok = bool(r.get("control"))  # a diverged control fails the lazy regime, as it should
        else:
            lo, hi = fit.low, fit.high
            ax.plot([lo, hi], [y, y], color=color, linewidth=1.6, solid_capstyle="butt")
            ax.plot([fit.slope], [y], marker="o", color=color,
                    markerfacecolor="white" if r.get("control") else color)
            ok = (pred is None) or style.slope_ok(fit, pred, control=bool(r.get("control")))
        ax.text(1.0, y, " \u2713" if ok else " \u2717", transform=ax.get_yaxis_transform(), va="center",
                ha="left", color="#009E73" if ok else "#D55E00", fontsize=8, fontweight="bold", clip_on=False)
    if reference is not None:
        ax.axvline(reference, color=style.REFERENCE, linestyle="--", linewidth=0.8, zorder=0)
    ax.set_yticks(range(n))
    ax.set_yticklabels([r["label"] for r in reversed(rows)])
    ax.set_ylim(-0.6, n - 0.4)
    ax.spines["left"].set_visible(False)
    ax.tick_params(axis="y", length=0)
    ax.set_xlabel("log-log slope, 95% CI")
