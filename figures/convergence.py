"""Figure: gradient descent on a long prefix against the NTK theory (spec 2.1, claims 1-6).

Reads a stored ``convergence`` run (``sims run convergence``).  Panels:

(a) the loss ``L(t)/L(0)`` at every m (geometric mean over seeds) under the bound
    ``(1 - eta lambda/2)^t`` (claim 3), and the mean-field control in grey;
(b) the rates against m, each series divided by its value at the smallest m: kernel at
    initialisation, kernel drift, row movement (rms) and distance to kernel regression, with
    the predicted slope -1/2 and the mean-field control in grey (claims 1, 4-6);
(c) the verdict as stored in the run's manifest: every rate row's slope with its 95% interval,
    the prediction as a black tick (claim 4b has its extreme-value prediction) and the row's
    status; nothing is refitted or re-derived here.
"""

from __future__ import annotations


import numpy as np

from figures import common, data, style

EXPERIMENT = "convergence"
BLOWUP = 1e3  # a control whose loss grows this much (or is non-finite) has diverged
NAME = "convergence"
DEFAULT_WIDTH = "full"

SERIES = (  # (result name, legend label, short label, marker, claim number)
    ("H0_err", r"$\|H(0)-H^*\|$", "kernel at init", "o", "1"),
    ("kernel_change", r"sup$_t\,\|H(t)-H(0)\|$", "kernel drift", "s", "5"),
    ("movement_rms", r"rms$_r\,\|p_r(t)-p_r(0)\|$", "row movement (rms)", "^", "4"),
    ("lin_dist", r"sup$_t\,\|r(t)-r_{\rm lin}(t)\|$", "dist. to kernel regr.", "D", "6"),
)


def _sup(a, key):
    v = np.asarray(a[key], float)
    return float(np.max(v)) if np.all(np.isfinite(v)) else np.nan


def _by_m(results, parametrization, key):
    res = data.select(results, parametrization=parametrization)
    if not res:
        return None, None
    return data.grid(res, "m", lambda c, a: _sup(a, key))


def _loss_panel(ax, results, narrow=False):
    ntk = data.select(results, parametrization="ntk")
    ms = sorted({c["m"] for c, _ in ntk})
    for i, m in enumerate(ms):
        curves = np.array([a["loss"] / a["loss"][0] for c, a in ntk if c["m"] == m])
        center, low, high = style.geometric_band(curves.T)
        t = np.arange(curves.shape[1])
        line, = ax.plot(t, center, color=style.PALETTE[i % len(style.PALETTE)], label=f"m = {m:,}")
        if curves.shape[0] > 1:
            ax.fill_between(t, low, high, color=line.get_color(), alpha=0.18, linewidth=0)
    a0 = ntk[0][1]
    bound = np.asarray(a0["loss_bound"], float) / float(a0["loss"][0])
    ax.plot(np.arange(bound.size), bound, color=style.REFERENCE, linestyle="--", linewidth=0.9,
            label=r"bound $(1-\eta\lambda/2)^t$")
    lo = float(np.nanmin(np.where(np.isfinite(bound) & (bound > 0), bound, np.nan)))
    mf = data.select(results, parametrization="mean-field")
    if mf:
        top = max(c["m"] for c, _ in mf)
        curves = np.array([a["loss"] / a["loss"][0] for c, a in mf if c["m"] == top], float)
        bad = ~np.isfinite(curves) | (curves > BLOWUP)
        stop = int(np.argmax(bad.any(axis=0))) if bad.any() else curves.shape[1]
        center, _, _ = style.geometric_band(curves[:, :stop].T)
        label = f"mean-field control\n(m = {top:,}" + (f"; diverged at t = {stop})" if stop < curves.shape[1] else ")")
        ax.plot(np.arange(stop), center, color=style.CONTROL, linestyle=":", label=label)
        if stop < curves.shape[1]:
            ax.plot([stop], [BLOWUP], marker="x", color=style.CONTROL, linestyle="none", clip_on=False)
    ntk_lo = min(float(np.nanmin(a["loss"] / a["loss"][0])) for _, a in ntk)
    ax.set_ylim(max(min(ntk_lo, lo) / 3, 1e-30), BLOWUP * 2 if mf and stop < curves.shape[1] else None)
    ax.set_yscale("log")
    ax.set_xlabel("gradient-descent step t")
    ax.set_ylabel(r"$L(t)\,/\,L(0)$")
    style.legend(ax, below=True, ncol=1 if narrow else 2)


def _rates_panel(ax, results, narrow=False, verdict=()):
    xs_all, shown, diverged = None, [], set()
    for i, (key, label, _, marker, _) in enumerate(SERIES):
        xs, Y = _by_m(results, "ntk", key)
        line = style.rate_series(ax, xs, Y, label=label, color=style.PALETTE[i], marker=marker, normalize=True)
        shown.append(line.get_ydata())
        xs_all = xs
        xc, Yc = _by_m(results, "mean-field", key)
        if xc is None or key == "H0_err":
            continue
        # A diverged control (non-finite, or grown a million-fold) is marked, not drawn off the scale.
        center, _, _ = style.geometric_band(np.where(np.isfinite(Yc), Yc, np.nan))
        ok = np.all(np.isfinite(Yc), axis=1) & np.isfinite(center) & (center <= BLOWUP**2 * center[0])
        good = np.flatnonzero(ok)
        keep = good[good < (np.flatnonzero(~ok)[0] if (~ok).any() else len(ok))]
        if keep.size:
            line = style.rate_series(ax, xc[keep], Yc[keep], label=None, control=True, marker=marker, normalize=True)
            shown.append(line.get_ydata())
        diverged |= {float(x) for x in xc[~ok]}
    try:  # the prediction as the verdict states it (claim 1's exponent)
        target = float(data.verdict_row(verdict, "1")["target"])
    except (data.MissingResults, TypeError, KeyError):
        target = -0.5
    style.reference_slope(ax, xs_all, target, through=(xs_all[0], 1.0), label=f"predicted ${target:g}$")
    ax.plot([], [], color=style.CONTROL, linestyle=":", marker="o", markerfacecolor="white",
            label="mean-field control")
    if diverged:
        xd = sorted(diverged)
        ax.plot(xd, [0.95] * len(xd), transform=ax.get_xaxis_transform(), marker="x", color=style.CONTROL,
                linestyle="none", label="control diverged")
    vals = np.concatenate([np.asarray(v, float) for v in shown])
    vals = vals[np.isfinite(vals) & (vals > 0)]
    ax.set_ylim(vals.min() / 2, vals.max() * (6 if diverged else 2))
    style.xticks_from(ax, xs_all)
    ax.set_xlabel("prefix length m")
    ax.set_ylabel("relative to the smallest m")
    style.legend(ax, below=True, ncol=1 if narrow else 2)


def _verdict_panel(ax, run):
    """The verdict's rate rows (claims 1, 4, 4b, 5, 6 and their mean-field controls) as stored."""
    names = {claim: short for _, _, short, _, claim in SERIES}
    names["4b"] = "row movement (max)"
    rows = []
    for d in data.rate_rows(run.verdict):
        cid = str(d.get("id"))
        base = cid[1:] if d.get("is_control") else cid
        name = names.get(base) or (d.get("short") or d.get("claim", ""))[:28]
        rows.append({"label": f"control: {name}" if d.get("is_control") else f"{cid}. {name}", "row": d})
    common.forest(ax, rows, reference=-0.5)
    for tick, r in zip(ax.get_yticklabels(), list(reversed(rows))):
        if r["row"].get("is_control"):
            tick.set_color(style.CONTROL)


def plot(run: data.Run, *, venue: str = "acl", width: str = DEFAULT_WIDTH):
    w, _ = style.figsize(venue, width)
    if style.side_by_side(venue, width):  # (a) and (b) side by side, the verdict underneath
        fig = style.new_figure((w, min(0.85 * w, 5.6)))
        gs = fig.add_gridspec(2, 2, height_ratios=(1.75, 1.0))
        a, b, c = fig.add_subplot(gs[0, 0]), fig.add_subplot(gs[0, 1]), fig.add_subplot(gs[1, :])
        narrow = False
    else:
        fig = style.new_figure((w, 3.1 * w))
        gs = fig.add_gridspec(3, 1, height_ratios=(1.3, 1.3, 1.0))
        a, b, c = (fig.add_subplot(gs[i, 0]) for i in range(3))
        narrow = True
    _loss_panel(a, run.results, narrow)
    style.panel_label(a, "(a) linear convergence")
    _rates_panel(b, run.results, narrow, run.verdict)
    style.panel_label(b, "(b) rates in m")
    _verdict_panel(c, run)
    style.panel_label(c, "(c) verdict" + ("" if narrow else ": the stored slopes and intervals, predictions as black ticks"))
    if narrow:
        c.tick_params(axis="y", labelsize=6.5)
    return fig

