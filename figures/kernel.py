"""Figure: the empirical NTK at initialisation concentrates around its infinite-prefix limit H*.

Reads a stored ``kernel`` run (``sims run kernel``).  Panels:

(a) ``||H(0) - H*||_F / ||H*||_F`` against m for each model (geometric mean and 95% band over
    seeds; in the legend the verdict's slope, interval and status, row ``<model>-1``), the exact ``exp-sign``
    prediction ``sqrt(C/m)`` as a black dashed line, and the negative control in grey: the
    distance to a wrong limit (H* at ``sqrt(2) sigma``), which must stop decaying;
(b) ``lambda_min(H(0)) / lambda_min(H*)`` against m (mean, min-max band over seeds), with the
    claim-2 threshold 1/2;
(c) ``exp-sign``: ``m ||H(0) - H*||_F^2`` for every draw against its exact expectation C.
"""

from __future__ import annotations


import numpy as np

import theory as T
from figures import common, data, style
from theory.stats import mean_ci

EXPERIMENT = "kernel"
NAME = "kernel"
DEFAULT_WIDTH = "full"

MARKERS = ("o", "s", "^")  # by position in theory.model_names(); "D" for any other model


def _models(results):
    order = T.model_names()
    present = {c["model"] for c, _ in results}
    return [m for m in order if m in present] + sorted(present - set(order))


def _marker(name):
    order = T.model_names()
    i = order.index(name) if name in order else len(MARKERS)
    return MARKERS[i] if i < len(MARKERS) else "D"


def _exact(results):
    """``(name, cells)`` of the first model whose cells carry an exact constant C, or None."""
    for name in _models(results):
        res = data.select(results, model=name)
        if res and "C_exact" in res[0][1]:
            return name, res
    return None


def _error_panel(ax, results, verdict=()):
    xs_all = None
    for i, name in enumerate(_models(results)):
        res = data.select(results, model=name)
        xs, Y = data.grid(res, "m", lambda c, a: float(a["err"]) / float(a["H_star_norm"]))
        row = _row(verdict, f"{name}-1")
        style.rate_series(ax, xs, Y, label=name, color=style.PALETTE[i], marker=_marker(name), row=row)
        xw, Yw = data.grid(res, "m", lambda c, a: float(a["err_wrong"]) / float(a["H_star_norm"]))
        style.rate_series(ax, xw, Yw, label=None, control=True, marker=_marker(name), band=False)
        xs_all = xs if xs_all is None else np.union1d(xs_all, xs)
        if "C_exact" in res[0][1]:  # a model with an exact constant (exp-sign)
            a0 = res[0][1]
            C, norm = float(a0["C_exact"]), float(a0["H_star_norm"])
            grid = np.geomspace(xs.min(), xs.max(), 32)
            ax.plot(grid, np.sqrt(C / grid) / norm, color=style.REFERENCE, linestyle="--", linewidth=0.9,
                    label=name + r" exact $\sqrt{C/m}$ (slope $-1/2$)", zorder=1)
    ax.plot([], [], color=style.CONTROL, linestyle=":", marker="o", markerfacecolor="white",
            label=r"control: wrong $H^*$ ($\sqrt{2}\sigma$)")
    style.xticks_from(ax, xs_all)
    ax.set_xlabel("prefix length m")
    ax.set_ylabel(r"$\|H(0)-H^*\|_F\,/\,\|H^*\|_F$")
    style.legend(ax, below=True)


def _lambda_panel(ax, results):
    xs_all = None
    for i, name in enumerate(_models(results)):
        res = data.select(results, model=name)
        xs, Y = data.grid(res, "m", lambda c, a: float(a["lambda_min_H0"]) / float(a["lambda_star"]))
        center = np.nanmean(Y, axis=1)
        lo, hi = np.nanmin(Y, axis=1), np.nanmax(Y, axis=1)
        line, = ax.plot(xs, center, color=style.PALETTE[i], marker=_marker(name), label=name)
        ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.18, linewidth=0)
        xs_all = xs if xs_all is None else np.union1d(xs_all, xs)
    ax.axhline(1.0, color=style.REFERENCE, linestyle="--", linewidth=0.9, label=r"limit: $\lambda_{\min}(H^*)$")
    ax.axhline(0.5, color=style.CONTROL, linestyle=":", linewidth=0.9, label=r"claim 2 threshold $\lambda/2$")
    ax.set_xscale("log")
    style.xticks_from(ax, xs_all)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("prefix length m")
    ax.set_ylabel(r"$\lambda_{\min}(H(0))\,/\,\lambda_{\min}(H^*)$")
    style.legend(ax, below=True)


def _row(verdict, id):
    try:
        return data.verdict_row(verdict, id)
    except data.MissingResults:  # a run stored before its rows had ids: the curve gets no verdict label
        return None


def _constant_panel(ax, results, verdict=()):
    found = _exact(results)
    if found is None:
        ax.text(0.5, 0.5, "no cells with an exact constant (exp-sign) in this run", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
        return
    name, res = found
    C = float(res[0][1]["C_exact"])
    ms = sorted({c["m"] for c, _ in res})
    for j, m in enumerate(ms):
        v = np.array([c["m"] * float(a["err"]) ** 2 for c, a in res if c["m"] == m])
        jitter = np.linspace(-0.08, 0.08, v.size) if v.size > 1 else np.zeros(1)
        ax.plot(m * np.exp(jitter), v / C, linestyle="none", marker="o", markersize=2.5, color=style.PALETTE[0],
                alpha=0.5, label="one draw" if j == 0 else None)
        mean, lo, hi = mean_ci(v / C)
        ax.errorbar([m], [mean], yerr=[[mean - lo], [hi - mean]] if np.isfinite(lo) else None, color=style.PALETTE[1],
                    marker="s", capsize=2, linewidth=1.0, label="mean, 95% CI" if j == 0 else None)
    allv = [c["m"] * float(a["err"]) ** 2 / C for c, a in res]
    mean, lo, hi = mean_ci(allv, level=0.99)
    ax.axhline(1.0, color=style.REFERENCE, linestyle="--", linewidth=0.9, label="exact expectation C")
    claim = next((d for d in map(lambda r: r if isinstance(r, dict) else r.as_dict(), verdict)
                  if d.get("claim", "").startswith(f"{name}: E m")), None)  # the verdict's row for C, if any
    mark = " " + style.STATUS_MARK.get(claim["status"], "?") if claim else ""
    style.shows(ax, claim)
    ax.axhspan(lo, hi, color=style.PALETTE[1], alpha=0.12, linewidth=0,
               label=f"all draws: 99% CI [{lo:.2f}, {hi:.2f}]" + mark)
    ax.set_xscale("log")
    style.xticks_from(ax, ms)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("prefix length m")
    ax.set_ylabel(name + r": $m\|H(0)-H^*\|_F^2\,/\,C$")
    style.legend(ax, below=True)


def plot(run: data.Run, *, venue: str = "acl", width: str = DEFAULT_WIDTH):
    rows = run.verdict
    return style.labelled_panels(run.results, [(lambda ax, res: _error_panel(ax, res, rows), "(a) concentration"),
                                               (_lambda_panel, "(b) smallest eigenvalue"),
                                               (lambda ax, res: _constant_panel(ax, res, rows), "(c) exact constant")],
                                 venue=venue, width=width)

