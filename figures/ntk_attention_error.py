"""Figure: NTK-Attention with exact Taylor summaries against its error bound (spec section 4).

Reads a stored ``ntk-attention-error`` run (``sims run ntk-attention-error``).  Panels:

(a) the error ``max_i ||NTKAttn_i - PrefixAttn_i||_inf`` against the Taylor degree g for each
    logit bound beta (random inputs, largest m, geometric mean and min-max band over seeds) and
    the derived bound ``eps_g/(1 - eps_g) max_r ||v_r - o||_inf`` (dashed, same colour); in grey the negative
    control, the same bound without its ``e^beta`` factor, for the largest beta;
(b) every (query row, degree) pair: measured error against the refined bound (coloured) and
    against the control bound (grey); points above the diagonal violate their bound;
(c) the error at the degree g* the bound asks for, against the target ``m^-c`` (dashed).
"""

from __future__ import annotations


import numpy as np

from figures import common, data, style

EXPERIMENT = "ntk-attention-error"
NAME = "ntk_attention_error"
DEFAULT_WIDTH = "full"


def _rowmax(b):
    """Max over query rows of a (G, L) bound, NaN where the bound is vacuous for every row."""
    b = np.asarray(b, float)
    out = np.full(b.shape[0], np.nan)
    for i, row in enumerate(b):
        fin = row[np.isfinite(row)]
        if fin.size == row.size:
            out[i] = fin.max()
    return out


def _degree_panel(ax, results):
    patterns = sorted({c["pattern"] for c, _ in results})
    pattern = "random" if "random" in patterns else patterns[0]
    m_top = max(c["m"] for c, _ in results)
    res = data.select(results, pattern=pattern, m=m_top)
    betas = sorted({c["beta"] for c, _ in res})
    for i, beta in enumerate(betas):
        rb = data.select(res, beta=beta)
        g = np.asarray(rb[0][1]["g"], float)
        err = np.maximum(np.array([a["err"] for _, a in rb], float).T, 1e-300)  # (G, seeds)
        center, _, _ = style.geometric_band(err)
        low, high = err.min(axis=1), err.max(axis=1)  # few seeds: a min-max band
        color = style.PALETTE[i % len(style.PALETTE)]
        ax.plot(g, center, color=color, marker="o", label=rf"$\beta$ = {beta:g}")
        if err.shape[1] > 1:
            ax.fill_between(g, low, high, color=color, alpha=0.18, linewidth=0)
        bound = np.array([_rowmax(a["bound_closed"]) for _, a in rb]).max(axis=0)
        ax.plot(g, bound, color=color, linestyle="--", linewidth=0.9)
        if i == len(betas) - 1:
            wrong = np.array([_rowmax(a["bound_wrong"]) for _, a in rb]).max(axis=0)
            ax.plot(g, wrong, color=style.CONTROL, linestyle=":", marker="o", markerfacecolor="white",
                    markeredgecolor=style.CONTROL, label=rf"control: no $e^\beta$ ($\beta$ = {beta:g})")
    ax.plot([], [], color=style.REFERENCE, linestyle="--", linewidth=0.9, label=r"derived bound")
    ax.set_yscale("log")
    ax.set_xlabel(f"Taylor degree g ({pattern} inputs, m = {m_top:,})")
    ax.set_ylabel(r"max$_i\,\|$NTKAttn$_i-$PrefixAttn$_i\|_\infty$")
    style.legend(ax, below=True, ncol=2)


def _scatter_panel(ax, results):
    lo, hi = np.inf, 0.0
    colors = {"random": style.PALETTE[0], "adversarial": style.PALETTE[1]}
    n_bad = 0
    for pattern in sorted({c["pattern"] for c, _ in results}):
        xs, ys = [], []
        for _, a in data.select(results, pattern=pattern):
            e, b = np.asarray(a["err_rows"], float), np.asarray(a["bound_refined"], float)
            ok = np.isfinite(b) & (b > 0) & (e > 0)
            xs.append(b[ok]), ys.append(e[ok])
        x, y = np.concatenate(xs), np.concatenate(ys)
        if x.size:
            ax.plot(x, y, linestyle="none", marker="o", markersize=2.2, alpha=0.6,
                    color=colors.get(pattern, style.PALETTE[2]), label=f"{pattern}: refined bound")
            lo, hi = min(lo, x.min(), y.min()), max(hi, x.max(), y.max())
    xs, ys = [], []
    for _, a in results:
        e, b = np.asarray(a["err_rows"], float), np.asarray(a["bound_wrong"], float)
        ok = np.isfinite(b) & (b > 0) & (e > 0)
        xs.append(b[ok]), ys.append(e[ok])
    x, y = np.concatenate(xs), np.concatenate(ys)
    if x.size:
        n_bad = int(np.sum(y > x))
        ax.plot(x, y, linestyle="none", marker="x", markersize=3, alpha=0.7, color=style.CONTROL, zorder=3,
                label=rf"control: no $e^\beta$ ({n_bad} above)")
        near = x <= 100 * hi  # a near-vacuous control bound (eps -> 1) would stretch the axes
        if near.any():
            lo, hi = min(lo, x[near].min(), y[near].min()), max(hi, x[near].max(), y[near].max())
    if np.isfinite(lo) and hi > 0:
        ax.plot([lo, hi], [lo, hi], color=style.REFERENCE, linestyle="--", linewidth=0.9, label="error = bound")
        ax.set_xlim(lo / 3, hi * 3)
        ax.set_ylim(lo / 3, hi * 3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("bound (per query row and degree)")
    ax.set_ylabel("measured error")
    style.legend(ax, below=True)


def _target_panel(ax, results):
    c = results[0][0].get("c", 0.5)
    betas = sorted({cc["beta"] for cc, _ in results})
    ms = sorted({cc["m"] for cc, _ in results})
    for i, beta in enumerate(betas):
        res = [(cc, a) for cc, a in data.select(results, beta=beta) if int(a["g_star"]) >= 0]
        if not res:
            continue
        x = np.array([cc["m"] for cc, _ in res], float)
        y = np.array([float(a["err_at_g_star"]) for _, a in res])
        x = x * np.exp(np.linspace(-0.1, 0.1, x.size)) if x.size > 1 else x
        ax.plot(x, np.maximum(y, 1e-18), linestyle="none", marker="o", markersize=3,
                color=style.PALETTE[i % len(style.PALETTE)], label=rf"$\beta$ = {beta:g}")
    gs = sorted({int(a["g_star"]) for _, a in results if int(a["g_star"]) >= 0})
    span = f" (g* = {gs[0]}..{gs[-1]})" if gs else ""
    grid = np.geomspace(min(ms), max(ms), 32)
    ax.plot(grid, grid ** (-c), color=style.REFERENCE, linestyle="--", linewidth=0.9,
            label=f"target $m^{{-{c:g}}}${span}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    style.xticks_from(ax, ms)
    ax.set_xlabel("prefix length m")
    ax.set_ylabel(r"error at the bound's degree $g^*$")
    style.legend(ax, below=True, ncol=1)


def plot(run: data.Run, *, venue: str = "acl", width: str = DEFAULT_WIDTH):
    return style.labelled_panels(run.results, [(_degree_panel, "(a) error vs degree"),
                                               (_scatter_panel, "(b) error vs bound"),
                                               (_target_panel, "(c) error $\\leq m^{-c}$")], venue=venue, width=width)

