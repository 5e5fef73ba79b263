"""Figure: cost of exact prefix attention against NTK-Attention as the prefix grows (spec section 4).

Reads a stored ``ntk-attention-cost`` run (``sims run ntk-attention-cost``); its timings are
measurements of the machine that ran it.  Panels:

(a) time per forward call against m: prefix attention (predicted O(m) once m dominates, slope 1
    as the reference line) and NTK-Attention for each feature map (constant in m); the dotted
    line is each feature map's measured crossover as the stored verdict row holds it
    (``F-1``, :func:`sims.experiments.ntk_attention_cost.crossover_id`: ``2^estimate``, the
    legend its bracket in m, the predicted m and the status); nothing is recomputed here;
(b) stored state in bytes: ``2 m d`` prefix numbers against the ``r d + r`` summary, and XLA's
    own account of each forward pass (dashed).
"""

from __future__ import annotations

import numpy as np

from figures import common, data, style
from sims.experiments.ntk_attention_cost import crossover_id

EXPERIMENT = "ntk-attention-cost"
NAME = "ntk_attention_cost"
DEFAULT_WIDTH = "full"


def _features(results):
    return sorted({c["feature"] for c, _ in results}, key=lambda f: (f != "taylor", f))


def _crossover(verdict, feature):
    """``(row, m)``: ``feature``'s stored crossover row and its crossover m (``2^estimate``, the row
    holds log2 m); ``(None, None)`` when the run has no such row or it has no estimate."""
    try:
        row = data.verdict_row(verdict, crossover_id(feature))
    except data.MissingResults:
        return None, None
    est = row.get("estimate")
    return (row, 2.0 ** float(est)) if est is not None and np.isfinite(est) else (row, None)


def _crossover_text(row) -> str:
    lo, hi, target = (2.0 ** float(row[k]) for k in ("low", "high", "target"))
    mark = style.STATUS_MARK.get(row.get("status"), "?")
    return f"crossover {2.0 ** float(row['estimate']):.3g} [{lo:.3g}, {hi:.3g}], pred. {target:.3g} {mark}"


def _time_panel(ax, results, verdict=()):
    xs, Y = data.grid(results, "m", lambda c, a: float(a["t_prefix"]), seed_key=("feature", "seed"))
    # Timings are measurements, never a claim: the fitted slope is shown without a verdict mark.
    style.rate_series(ax, xs, Y * 1e3, label=f"prefix attention: {style.slope_label(xs, Y)}", color=style.PALETTE[0])
    style.reference_slope(ax, xs, 1.0, through=(xs[-1], float(np.nanmin(Y[-1])) * 1e3), label="slope 1 (O(m))")
    for i, feat in enumerate(_features(results)):
        res = data.select(results, feature=feat)
        r = int(res[0][1]["r"])
        xf, Yf = data.grid(res, "m", lambda c, a: float(a["t_ntk"]))
        style.rate_series(ax, xf, Yf * 1e3, label=f"NTK-Attention, {feat} (r = {r})", color=style.PALETTE[i + 1],
                          marker="s^v"[i % 3])
        row, cross = _crossover(verdict, feat)
        if cross is not None:
            style.shows(ax, row)
            ax.axvline(cross, color=style.PALETTE[i + 1], linestyle=":", linewidth=0.8, label=_crossover_text(row))
    if xs.size <= 6:
        style.xticks_from(ax, xs)
    ax.set_xlabel("prefix length m (dotted: the verdict's crossover)")
    ax.set_ylabel("time per forward call (ms)")
    style.legend(ax, below=True)


def _memory_panel(ax, results):
    xs, Y = data.grid(data.select(results, feature=_features(results)[0]), "m",
                      lambda c, a: float(a["state_bytes_prefix"]))
    ax.plot(xs, Y[:, 0], color=style.PALETTE[0], marker="o", label="prefix: 2 m d (state)")
    xs, Yx = data.grid(data.select(results, feature=_features(results)[0]), "m",
                       lambda c, a: float(a["xla_bytes_prefix"]))
    ax.plot(xs, Yx[:, 0], color=style.PALETTE[0], linestyle="--", label="prefix: forward pass (XLA)")
    for i, feat in enumerate(_features(results)):
        res = data.select(results, feature=feat)
        xf, Yf = data.grid(res, "m", lambda c, a: float(a["state_bytes_ntk"]))
        ax.plot(xf, Yf[:, 0], color=style.PALETTE[i + 1], marker="s^v"[i % 3], label=f"{feat}: r d + r (state)")
        xf, Yf = data.grid(res, "m", lambda c, a: float(a["xla_bytes_ntk"]))
        ax.plot(xf, Yf[:, 0], color=style.PALETTE[i + 1], linestyle="--", label=f"{feat}: forward pass (XLA)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("prefix length m")
    ax.set_ylabel("bytes")
    style.legend(ax, below=True, ncol=2)


def plot(run: data.Run, *, venue: str = "acl", width: str = DEFAULT_WIDTH):
    time_panel = lambda ax, results: _time_panel(ax, results, run.verdict)  # noqa: E731
    return style.labelled_panels(run.results, [(time_panel, "(a) time"), (_memory_panel, "(b) memory")],
                                 venue=venue, width=width, panel_aspect=1.0)

