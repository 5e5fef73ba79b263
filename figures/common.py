"""What every figure script shares: ``build`` (load a saved run, plot, save) and ``main`` (CLI).

Each figure module defines ``EXPERIMENT`` (whose results it reads), ``NAME`` (the file stem),
``DEFAULT_WIDTH`` and ``plot(run, *, venue, width) -> Figure``; running it as a script
(``python -m figures.<name> --results results --out figures/out``) builds that one figure.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from types import ModuleType


from figures import data, style

DEFAULT_OUT = Path("figures") / "out"


def module(name_or_module: str | ModuleType) -> ModuleType:
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


def main(fig_module: str | ModuleType, argv: list[str] | None = None) -> int:
    mod = module(fig_module)
    # Run as ``python -m figures.NAME`` the module is ``__main__``; name it by its file instead.
    name = mod.__name__ if mod.__name__ != "__main__" else f"figures.{Path(mod.__file__).stem}"
    p = argparse.ArgumentParser(prog=f"python -m {name}", description=(mod.__doc__ or "").split("\n")[0])
    p.add_argument("--results", default="results", help="results folder (default: results)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help=f"output folder (default: {DEFAULT_OUT})")
    p.add_argument("--run", default=None, help=getattr(mod, "RUN_HELP", f"run id of {mod.EXPERIMENT} (default: the newest)"))
    p.add_argument("--venue", default="acl", choices=sorted(style.VENUES))
    p.add_argument("--width", default=None, choices=style.WIDTHS, help=f"default: {mod.DEFAULT_WIDTH}")
    p.add_argument("--format", dest="formats", action="append", choices=("pdf", "png", "svg"),
                   help="repeatable (default: pdf and png)")
    p.add_argument("--dpi", type=int, default=style.PNG_DPI, help=f"PNG resolution (default {style.PNG_DPI})")
    a = p.parse_args(argv)
    try:
        paths = build(mod, a.results, a.out, run=a.run, venue=a.venue, width=a.width,
                      formats=a.formats or style.FORMATS, dpi=a.dpi)
    except data.MissingResults as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0


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
