"""Figure: cost of exact prefix attention against NTK-Attention as the prefix grows (spec section 4).

Reads a stored ``ntk-attention-cost`` run (``sims run ntk-attention-cost``); its timings are
measurements of the machine that ran it.  Panels:

(a) time per forward call against m: prefix attention (predicted O(m) once m dominates, slope 1
    as the reference line) and NTK-Attention for each feature map (constant in m), the measured
    crossover marked;
(b) stored state in bytes: ``2 m d`` prefix numbers against the ``r d + r`` summary, and XLA's
    own account of each forward pass (dashed).
"""

from __future__ import annotations


import numpy as np

from figures import common, data, style

EXPERIMENT = "ntk-attention-cost"
NAME = "ntk_attention_cost"
DEFAULT_WIDTH = "full"


def _features(results):
    return sorted({c["feature"] for c, _ in results}, key=lambda f: (f != "taylor", f))


def _time_panel(ax, results):
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
        slower = np.nanmean(Y, axis=1) > np.nanmean(Yf, axis=1)
        cross = next((m for j, m in enumerate(xf) if slower[j:].all()), None)
        if cross is not None:
            ax.axvline(cross, color=style.PALETTE[i + 1], linestyle=":", linewidth=0.8)
    if xs.size <= 6:
        style.xticks_from(ax, xs)
    ax.set_xlabel("prefix length m (dotted: measured crossover)")
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
    return style.labelled_panels(run.results, [(_time_panel, "(a) time"), (_memory_panel, "(b) memory")],
                                 venue=venue, width=width, panel_aspect=1.0)

