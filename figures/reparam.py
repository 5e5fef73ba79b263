"""Figure: shared (reparameterised) against non-shared prompts, sample efficiency (spec section 5).

Reads a stored ``reparam`` run (``sims run reparam``).  Log-log against the sample size n, the
geometric mean and 95% band over replications, fitted log-log slopes (95% CI) in the legends
(without pass marks: the run's own verdict, in its manifest, is the judge):

(a) the Voronoi loss of over-specified fits (L = L* + 1) for every structure, with the shared
    prediction n^-1/2 as the reference line (non-shared: no polynomial rate);
(b) the parameter error of merged Voronoi cells (over-specified), reference n^-1/4;
(c) the L2 error of the fitted regression function (every structure and L), reference n^-1/2.
"""

from __future__ import annotations

import sys

import numpy as np

from figures import common, data, style

EXPERIMENT = "reparam"
NAME = "reparam"
DEFAULT_WIDTH = "full"

ORDER = ("shared_linear", "shared_tanh", "prompt", "nonshared")
SHORT = {"shared_linear": "shared lin.", "shared_tanh": "shared tanh", "prompt": "prompt", "nonshared": "non-shared"}
MARKERS = {"shared_linear": "o", "shared_tanh": "s", "prompt": "^", "nonshared": "D"}


def _color(structure):
    if structure == "nonshared":
        return style.PALETTE[1]
    shared = [s for s in ORDER if s != "nonshared"]
    return (style.PALETTE[0], style.PALETTE[2], style.PALETTE[3])[shared.index(structure) % 3] \
        if structure in shared else style.PALETTE[4]


def _structures(results):
    present = {c["structure"] for c, _ in results}
    return [s for s in ORDER if s in present] + sorted(present - set(ORDER))


def _L_star(results):
    return int(results[0][0].get("L_star", min(c["L"] for c, _ in results)))


def _metric_panel(ax, results, metric, predicted, *, over_only=True, ylabel="", all_structures=False):
    Ls = _L_star(results)
    xs_all, plotted = None, False
    for s in _structures(results):
        for L in sorted({c["L"] for c, _ in data.select(results, structure=s)}):
            if over_only and L <= Ls:
                continue
            res = data.select(results, structure=s, L=L)
            xs, Y = data.grid(res, "n", lambda c, a: float(a[metric]))
            keep = np.all(np.isfinite(Y) & (Y > 0), axis=0)
            if not keep.any():
                continue
            Y = Y[:, keep]
            # Slopes only, no verdict marks: the experiment's verdict (in the manifest) judges its own
            # statistics (means over replications, bootstrap intervals), not this geometric-mean fit.
            tag = SHORT.get(s, s) if over_only else f"{SHORT.get(s, s)}, L={L}"
            label = f"{tag}: {style.slope_label(xs, Y, short=True)}"
            style.rate_series(ax, xs, Y, label=label, color=_color(s), marker=MARKERS.get(s, "v"),
                              linestyle="-" if L > Ls else "--")
            xs_all = xs if xs_all is None else np.union1d(xs_all, xs)
            plotted = True
    if not plotted:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        return
    _, Y0 = data.grid(results, "n", lambda c, a: float(a[metric]), seed_key=("structure", "L", "seed"))
    y0 = float(np.nanmax(np.where(Y0[0] > 0, Y0[0], np.nan))) if np.isfinite(Y0[0]).any() else 1.0
    who = "" if all_structures else " (shared)"
    style.reference_slope(ax, xs_all, predicted, through=(xs_all[0], y0), label=f"predicted slope {predicted:g}{who}")
    style.xticks_from(ax, xs_all)
    ax.set_xlabel("sample size n")
    ax.set_ylabel(ylabel)
    if not over_only and any(c["L"] <= Ls for c, _ in results):
        ax.plot([], [], color=style.CONTROL, linestyle="--", label=f"dashed: exact (L = {Ls})")
    style.legend(ax, below=True)


def plot(run: data.Run, *, venue: str = "acl", width: str = DEFAULT_WIDTH):
    narrow = not style.side_by_side(venue, width)
    fig, (a, b, c) = style.panels(3, venue=venue, width=width, panel_aspect=1.45 if not narrow else 0.95)
    Ls = _L_star(run.results)
    _metric_panel(a, run.results, "voronoi", -0.5, ylabel=f"Voronoi loss (L = {Ls + 1})")
    style.panel_label(a, "(a) Voronoi loss, over-specified")
    _metric_panel(b, run.results, "merged_error", -0.25, ylabel="merged-cell parameter error")
    style.panel_label(b, "(b) merged cells")
    _metric_panel(c, run.results, "l2_error", -0.5, over_only=False, ylabel=r"$\|\hat f-f^*\|_{L^2}$",
                  all_structures=True)
    style.panel_label(c, "(c) regression function")
    return fig


if __name__ == "__main__":
    raise SystemExit(common.main(sys.modules[__name__]))
