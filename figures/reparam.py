"""Figure: shared (reparameterised) against non-shared prompts at a fixed truth (spec section 5).

Reads a stored ``reparam`` run (``sims run reparam``).  Log-log against the effective sample
size ``n_eff = n (sigma0 / sigma)^2``.  The markers are the statistic per n_eff
(:func:`sims.experiments.reparam_verdict.centre`, the values the verdict fits) with its 95% band;
the line through them and the legend's slope, interval and status are the stored verdict row
``<structure>-L<L>-<metric>`` (its estimate as the line's exponent, through the centroid of the
markers): nothing is refitted or judged here, and the dashed reference is the row's prediction.

(a) the merged-cell second moment ``sum w ||Delta||^2`` of over-specified fits (L = L* + 1),
    mean over replications, reference n^-1/2 (shared prediction);
(b) the merged-cell parameter error, root mean square over replications, reference n^-1/4;
(c) the L2 error of the fitted regression function (every structure; L = L* hollow markers and
    dashed, L = L* + 1 filled and solid), geometric mean, reference n^-1/2.

Bands: 95% intervals of the plotted statistic per n_eff (bootstrap for mean / RMS).
"""

from __future__ import annotations


import numpy as np
from matplotlib.ticker import LogLocator, NullFormatter

from figures import common, data, style
from sims.experiments import reparam_verdict as V

EXPERIMENT = "reparam"
NAME = "reparam"
DEFAULT_WIDTH = "full"

ORDER = ("shared_linear", "shared_tanh", "prompt", "nonshared")
SHORT = {"shared_linear": "shared lin.", "shared_tanh": "shared tanh", "prompt": "prompt", "nonshared": "non-shared"}
MARKERS = {"shared_linear": "o", "shared_tanh": "s", "prompt": "^", "nonshared": "D"}
COLORS = {"shared_linear": 0, "shared_tanh": 2, "prompt": 3, "nonshared": 1}


def _color(structure):
    return style.PALETTE[COLORS.get(structure, 4) % len(style.PALETTE)]


def _rate(results):
    return [(c, a) for c, a in results if c.get("kind", "rate") == "rate"]


def _structures(results):
    present = {c["structure"] for c, _ in results}
    return [s for s in ORDER if s in present] + sorted(present - set(ORDER))


def _L_star(results):
    return int(results[0][0].get("L_star", min(c["L"] for c, _ in results)))


def _bound(run, results):
    b = run.config.get("bound")
    return float(b) if b is not None else float(results[0][0].get("bound", 5.0))


def _log_axis(ax):
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(LogLocator(base=10, numticks=12))
        axis.set_minor_locator(LogLocator(base=10, subs=np.arange(2, 10) * 0.1, numticks=12))
        axis.set_minor_formatter(NullFormatter())
    lo, hi = ax.get_ylim()
    if np.floor(np.log10(hi)) - np.ceil(np.log10(lo)) < 1:  # fewer than two labelled decades: widen to
        ax.set_ylim(10 ** np.floor(np.log10(lo)), 10 ** np.ceil(np.log10(hi)))  # whole decades


def _row(run, s, L, metric):
    """The verdict row of (structure, L, metric), or None (a run stored before rows had these ids)."""
    try:
        return run.row(f"{s}-L{L}-{metric}")
    except data.MissingResults:
        return None


def _panel(ax, run, results, metric, stat, predicted, *, bound, Ls, over_only=True, ylabel=""):
    plotted, target = [], None
    for s in _structures(results):
        for L in sorted({c["L"] for c, _ in results if c["structure"] == s}):
            if over_only and L <= Ls:
                continue
            xs, y = V.table(results, s, L, metric, bound=bound)
            if len(xs) < 2:
                continue
            x, centre = np.asarray(xs, float), V.centre(y, stat)
            if not np.any(np.isfinite(centre) & (centre > 0)):
                continue
            lo, hi = V.band(y, stat)
            exact = L <= Ls
            tag = SHORT.get(s, s) if over_only else f"{SHORT.get(s, s)} L={L}"
            row = _row(run, s, L, metric)
            ls = "--" if exact else "-"
            # The data: the statistic per n_eff (markers) and its 95% band; the line: the verdict's slope.
            ax.plot(x, centre, color=_color(s), marker=MARKERS.get(s, "v"), linestyle="none",
                    markerfacecolor="white" if exact else _color(s), markersize=3.5)
            if row is None or not style.verdict_line(ax, x, centre, row, color=_color(s), linestyle=ls):
                ax.plot(x, centre, color=_color(s), linestyle=ls, linewidth=0.6)
            ax.plot([], [], color=_color(s), marker=MARKERS.get(s, "v"), linestyle=ls,
                    markerfacecolor="white" if exact else _color(s), markersize=3.5,
                    label=f"{tag}: " + (style.verdict_label(row) if row is not None else "no verdict row"))
            ax.fill_between(x, lo, hi, color=_color(s), alpha=0.15, linewidth=0)
            plotted.append((x, centre))
            if target is None and row is not None and row.get("target") is not None:
                target = float(row["target"])
    if not plotted:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        return
    ax.set_xscale("log")
    ax.set_yscale("log")
    xs = np.unique(np.concatenate([x for x, _ in plotted]))
    top = max(float(c[0]) for _, c in plotted if np.isfinite(c[0]))
    who = "" if not over_only else " (shared)"
    predicted = predicted if target is None else target  # the prediction as the verdict states it
    style.reference_slope(ax, xs, predicted, through=(xs[0], top), label=f"predicted {predicted:g}{who}")
    ax.set_xlabel(r"effective sample size $n_{\mathrm{eff}}$")
    ax.set_ylabel(ylabel)
    _log_axis(ax)
    style.legend(ax, below=True)


def plot(run: data.Run, *, venue: str = "acl", width: str = DEFAULT_WIDTH):
    results = _rate(run.results)
    narrow = not style.side_by_side(venue, width)
    fig, (a, b, c) = style.panels(3, venue=venue, width=width, panel_aspect=1.5 if not narrow else 0.95)
    Ls, bound = _L_star(results), _bound(run, results)
    _panel(a, run, results, "merged_m2", "mean", -0.5, bound=bound, Ls=Ls, ylabel=r"mean $\sum w\|\Delta\|^2$ (merged)")
    style.panel_label(a, "(a) merged moment")
    _panel(b, run, results, "merged_error", "rms", -0.25, bound=bound, Ls=Ls, ylabel="RMS merged-cell error")
    style.panel_label(b, "(b) merged error")
    _panel(c, run, results, "l2_error", "geometric", -0.5, bound=bound, Ls=Ls, over_only=False,
           ylabel=r"$\|\hat f-f^*\|_{L^2}$")
    style.panel_label(c, "(c) regression fn.")
    return fig

