"""Figure: how lazy prefix-tuning of a small pre-trained transformer is, against m.

Reads a stored ``lazy-prefix`` run (``sims run lazy-prefix``).  Per arm (NTK scaling with GD;
the standard scaling with the same function-space GD step, the negative control, in grey;
the standard scaling with Adam lr 1e-3, the paper's optimiser), geometric means over seeds with
95% bands (with >= 3 seeds) and the stylized prediction m^-1/2 as the dashed reference.  The
slopes that judge a claim are the stored verdict rows' (``<arm>-<quantity>``,
:func:`sims.experiments.lazy_prefix_verdict.row_id`), drawn in (c) as stored: nothing is
refitted or judged here.

(a) relative kernel movement sup_t ||H(t) - H(0)|| / ||H(0)|| (solid) and relative parameter
    movement ||theta(T) - theta_0|| / ||theta_0|| (dash-dot);
(b) the linearisation gap ||F(T) - F_lin(T)|| / ||F(T) - F(0)||, with the 10% line;
(c) local slopes between neighbouring m of the movements at matched progress (per unit of output
    change; the kernel also per unit of parameter displacement), NTK arm and control, with their
    95% intervals over seeds (descriptive); over the in-regime m, each one's verdict row: its
    slope (dashed) and 95% interval (shaded), also in the legend with its status; the prediction
    -1/2 and its band +-SLOPE_TOL, and the boundary
    of the long-prefix regime (mean prefix share of layer 0's attention at init >= 1/2;
    ``sims.experiments.lazy_prefix_regime``, docs/verdicts.md), also marked in (a) and (b);
(d) downstream test accuracy of the network (solid; dashed: its linearised model, for the
    NTK arm) against m, beside paper 2's reparameterised prefix, LoRA of matched parameter
    count (rank m/2, full rank d above m = 2d) and paper 1's NTK-Attention (trained summary,
    started at the degree-g summary of the m-row prefix: its size does not depend on m), with
    chance 1/p.
"""

from __future__ import annotations


import numpy as np

from figures import common, data, style
from sims.core.verdicts import SLOPE_TOL
from sims.experiments import lazy_prefix_regime as RG
from sims.experiments import lazy_prefix_verdict as LV

EXPERIMENT = "lazy-prefix"
NAME = "lazy_prefix"
DEFAULT_WIDTH = "full"

ARMS = ("ntk-gd", "standard-gd", "standard-adam", "reparam-adam")  # prefixes of m rows: movements against m
ACCURACY_ARMS = ARMS + ("lora-adam", "ntk-attention-adam")
LABEL = {"ntk-gd": "NTK, GD", "standard-gd": "std, GD (ctrl)", "standard-adam": "std, Adam",
         "reparam-adam": "reparam, Adam", "lora-adam": "LoRA (matched), Adam",
         "ntk-attention-adam": "NTK-Attention, Adam"}
SHORT = {"kernel_change": "H", "param_change": r"$\theta$", "lin_gap": "gap"}


def _xticks(ax, xs):
    """The grid's ticks, every other one labelled when there are more than five (m = 1 ... 4096)."""
    style.xticks_from(ax, xs)
    if len(xs) > 5:
        ax.set_xticklabels([style.compact_number(v) if i % 2 == 0 else "" for i, v in enumerate(xs)])


def _tune(results, arm):
    return [(c, a) for c, a in results if c.get("role") == "tune" and c.get("arm") == arm]


def _style(arm):
    return {"control": arm == "standard-gd",
            "color": {"ntk-gd": style.PALETTE[0], "standard-adam": style.PALETTE[1], "reparam-adam": style.PALETTE[2],
                      "lora-adam": style.PALETTE[3], "ntk-attention-adam": style.PALETTE[4]}.get(arm)}


def _boundary(ax, results, *, label=True):
    """A vertical line at the smallest m of the NTK arm in the long-prefix regime (none if no m is)."""
    ms, by_m = RG.tuning(results, "ntk-gd")
    inside = RG.regime_ms(ms, by_m)
    if inside:
        ax.axvline(inside[0], color=style.REFERENCE, linewidth=0.6, linestyle="-.",
                   label=f"regime: share $\\geq$ {RG.REGIME_SHARE:g} from m = {inside[0]}" if label else None)


LOCAL = (("ntk-gd", RG.MATCHED[0], "o"), ("ntk-gd", RG.MATCHED[1], "s"), ("ntk-gd", RG.MATCHED[2], "D"),
         ("ntk-gd", RG.MATCHED[3], "^"), ("standard-gd", RG.MATCHED[0], "o"), ("standard-gd", RG.MATCHED[1], "s"))
LOCAL_SHORT = {"kernel_change": "H / out", "param_change": r"$\theta$ / out", "lin_gap": "gap / out",
               "kernel_per_displacement": r"H / $\|\Delta\theta\|$"}


def _row(verdict, arm, quantity):
    """The stored in-regime rate row of (arm, quantity), or None (a run stored before rows had ids)."""
    try:
        return data.verdict_row(verdict, LV.row_id(arm, quantity))
    except data.MissingResults:
        return None


def _verdict_box(ax, ms, row, color, k):
    """The row's slope (dashed) and its interval (shaded) over the m its fit used: the stored numbers."""
    est, lo, hi = row.get("estimate"), row.get("low"), row.get("high")
    if est is None or not all(np.isfinite([est, lo, hi])) or len(ms) < 2:
        return
    x0, x1 = float(ms[0]), float(ms[-1])
    ax.fill_between([x0, x1], [lo, lo], [hi, hi], color=color, alpha=0.08, linewidth=0)
    ax.plot([x0, x1], [est, est], color=color, linestyle="--", linewidth=0.8, dashes=(2 + k % 3, 1.5))


def _local_slopes(ax, results, verdict=()):
    """Local slopes between neighbouring m of the matched-progress movements, with 95% intervals
    (descriptive), and each (arm, quantity)'s verdict row: its in-regime slope and interval as stored."""
    xs_all = None
    for k, (arm, quantity, marker) in enumerate(LOCAL):
        ms, by_m = RG.tuning(results, arm)
        if len(ms) < 2:
            continue
        fits = [(lo, hi, f) for lo, hi, f in RG.local_slopes(ms, by_m, quantity) if f is not None]
        if not fits:
            continue
        x = np.array([np.sqrt(lo * hi) for lo, hi, _ in fits]) * 1.03 ** (k - 2.5)  # dodge the error bars
        y = np.array([f.slope for _, _, f in fits])
        err = np.array([[f.slope - f.low for _, _, f in fits], [f.high - f.slope for _, _, f in fits]])
        st = _style(arm)
        color = style.CONTROL if st["control"] else style.PALETTE[k % 4]
        row = _row(verdict, arm, quantity.name)
        label = f"{LABEL[arm]}, {LOCAL_SHORT[quantity.name]}"
        if row is not None:
            style.shows(ax, row)
            label += f"; verdict {style.verdict_label(row, short=True)}"
            _verdict_box(ax, RG.regime_ms(ms, by_m), row, color, k)
        ax.errorbar(x, y, yerr=np.where(np.isfinite(err), err, 0.0), color=color, marker=marker, markersize=3,
                    linewidth=0.8, capsize=1.5, linestyle=":" if st["control"] else "-",
                    markerfacecolor="white" if st["control"] else color, label=label)
        xs_all = np.asarray(ms, float) if xs_all is None else np.union1d(xs_all, ms)
    if xs_all is None:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        return
    ax.axhspan(-0.5 - SLOPE_TOL, -0.5 + SLOPE_TOL, color=style.REFERENCE, alpha=0.08, linewidth=0)
    ax.axhline(-0.5, color=style.REFERENCE, linewidth=0.9, linestyle="--", label="stylized $-1/2$")
    _boundary(ax, results)
    ax.set_xscale("log")
    ax.set_ylim(-1.5, 1.0)
    _xticks(ax, xs_all)
    ax.set_xlabel("m (between neighbouring grid points)")
    ax.set_ylabel("local slope at matched progress")
    style.legend(ax, below=True, fontsize=5)


def _rates(ax, results, keys, ylabel, *, hline=None):
    xs_all, y0 = None, None
    for arm in ARMS:
        res = _tune(results, arm)
        if not res:
            continue
        for key, ls, marker in keys:
            xs, Y = data.grid(res, "m", lambda c, a: float(a[key]))
            st = _style(arm)
            style.rate_series(ax, xs, Y, label=f"{LABEL[arm]}, {SHORT[key]}",
                              linestyle=ls if not st["control"] else ":", marker=marker,
                              band=Y.shape[1] >= 3, **st)
            if arm == "ntk-gd" and y0 is None:
                y0 = float(np.nanmean(Y[0]))
            xs_all = xs if xs_all is None else np.union1d(xs_all, xs)
    if xs_all is None:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        return
    style.reference_slope(ax, xs_all, -0.5, through=(xs_all[0], y0 or 1.0), label="stylized $m^{-1/2}$")
    if hline is not None:
        ax.axhline(hline, color=style.REFERENCE, linewidth=0.6, linestyle=":", label=f"{hline:g}")
    _boundary(ax, results)
    _xticks(ax, xs_all)
    ax.set_xlabel("prefix rows per layer m")
    ax.set_ylabel(ylabel)
    style.legend(ax, below=True, fontsize=5)


def _accuracy(ax, results, chance):
    xs_all = None
    for arm in ACCURACY_ARMS:
        res = _tune(results, arm)
        if not res:
            continue
        st = _style(arm)
        color = style.CONTROL if st["control"] else st["color"]
        keys = (("test_accuracy", "-", "network"),) + ((("test_accuracy_lin", "--", "linearised"),)
                                                      if arm == "ntk-gd" else ())
        for key, ls, tag in keys:
            xs, Y = data.grid(res, "m", lambda c, a: float(a[key]))
            mean = np.nanmean(Y, axis=1)
            ax.plot(xs, mean, color=color, linestyle=ls, marker="o" if ls == "-" else "none",
                    label=f"{LABEL[arm]}, {tag}")
            xs_all = xs if xs_all is None else np.union1d(xs_all, xs)
    if xs_all is None:
        return
    ax.axhline(chance, color=style.REFERENCE, linewidth=0.6, linestyle=":", label=f"chance 1/p = {chance:.2g}")
    ax.set_xscale("log")
    _xticks(ax, xs_all)
    ax.set_xlabel("prefix rows per layer m")
    ax.set_ylabel("downstream test accuracy")
    style.legend(ax, below=True, fontsize=5)


def plot(run: data.Run, *, venue: str = "acl", width: str = DEFAULT_WIDTH):
    if style.side_by_side(venue, width):  # two rows of two: four panels in a row are too narrow to read
        w, _ = style.figsize(venue, width)
        fig = style.new_figure((w, min(1.15 * w, 8.0)))
        a, b, c, d = fig.subplots(2, 2).reshape(-1)
    else:
        fig, (a, b, c, d) = style.panels(4, venue=venue, width=width, panel_aspect=0.95)
    res = run.results
    _rates(a, res, [("kernel_change", "-", "o"), ("param_change", "-.", "s")], "relative movement")
    style.panel_label(a, "(a) kernel and parameters")
    _rates(b, res, [("lin_gap", "-", "D")], r"$\|F-F_{\rm lin}\|/\|F-F(0)\|$", hline=0.1)
    style.panel_label(b, "(b) linearisation gap")
    _local_slopes(c, res, run.verdict)
    style.panel_label(c, "(c) local slopes at matched progress")
    p = next((c["p"] for c, _ in res if "p" in c), 2)
    _accuracy(d, res, 1.0 / p)
    base = next((c.get("base") for c, _ in res), "?")
    style.panel_label(d, f"(d) accuracy ({base})")
    return fig

