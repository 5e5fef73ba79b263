"""Figure: trained NTK-Attention summaries against prefix attention (paper 1, section 4.4).

Reads a stored ``ntk-attention-train`` run (``sims run ntk-attention-train``).  Panels:

(a) validation MSE relative to the target's power, against the prefix length m, for each
    feature map (trained summary: solid; the exact summary of the same features: dashed; the
    untrained initialisation, a negative control, in grey);
(b) the training loss (running mean) of the first feature map, one curve per m;
(c) the norm of the trained summary ``||Z||`` against that of the exact one, which grows like m:
    what Adam must reach within its steps.
"""

from __future__ import annotations


import matplotlib
from matplotlib import ticker
import numpy as np

from figures import common, data, style

EXPERIMENT = "ntk-attention-train"
NAME = "ntk_attention_train"
DEFAULT_WIDTH = "full"


def _features(results):
    order = ("elu", "taylor")
    present = {c["feature"] for c, _ in results}
    return [f for f in order if f in present] + sorted(present - set(order))


def _mse_panel(ax, results):
    xs_all = None
    for i, feat in enumerate(_features(results)):
        res = data.select(results, feature=feat)
        color = style.PALETTE[i]
        rel = lambda key: (lambda c, a: float(a[key]) / float(a["target_power"]))  # noqa: E731
        xs, Y = data.grid(res, "m", rel("val_mse"))
        style.rate_series(ax, xs, Y, label=f"{feat}: trained", color=color)
        xe, Ye = data.grid(res, "m", rel("val_mse_exact"))
        style.rate_series(ax, xe, Ye, label=f"{feat}: exact summary", color=color, linestyle="--", marker="none",
                          band=False)
        xi, Yi = data.grid(res, "m", rel("val_mse_init"))
        style.rate_series(ax, xi, Yi, label="initialisation (control)" if i == 0 else None, control=True,
                          band=False, marker="os"[i % 2])
        xs_all = xs if xs_all is None else np.union1d(xs_all, xs)
    ax.set_xlabel("prefix length m")
    ax.set_ylabel("validation MSE / target power")
    _ticks(ax, xs_all)
    style.legend(ax, below=True)


def _ticks(ax, xs):
    xs = np.asarray(xs, float)
    if xs.size > 6:  # a long ladder (2, 4, ..., 2^18): label every few powers
        ax.set_xticks(xs[:: int(np.ceil(xs.size / 5))])
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: style.compact_number(v)))
        ax.minorticks_off()
    else:
        style.xticks_from(ax, xs)


def _loss_panel(ax, results):
    feat = _features(results)[0]
    res = sorted(data.select(results, feature=feat), key=lambda ca: (ca[0]["m"], ca[0].get("seed", 0)))
    ms = sorted({c["m"] for c, _ in res})
    cmap = matplotlib.colormaps["viridis"]
    for j, m in enumerate(ms):
        a = next(a for c, a in res if c["m"] == m)
        loss = np.asarray(a["losses"], float) / float(a["target_power"])
        w = max(1, loss.size // 50)
        smooth = np.convolve(loss, np.ones(w) / w, mode="valid")
        t = np.arange(smooth.size) + w
        ax.plot(t, smooth, color=cmap(j / max(1, len(ms) - 1)), linewidth=0.9,
                label=f"m = {m:,}" if (j in (0, len(ms) - 1) or len(ms) <= 4) else None)
    ax.set_yscale("log")
    ax.set_xscale("log")
    ax.set_xlabel("Adam step")
    ax.set_ylabel(f"{feat}: training MSE / target power")
    style.legend(ax, below=True, ncol=2)


def _norm_panel(ax, results):
    xs_all = None
    scaled = any(c.get("scale", 1.0) != 1.0 for c, _ in results)
    for i, feat in enumerate(_features(results)):
        res = data.select(results, feature=feat)
        xs, Y = data.grid(res, "m", lambda c, a: float(a["summary_norm"]))
        style.rate_series(ax, xs, Y, label=f"{feat}: trained" + (" (scale m)" if scaled else ""),
                          color=style.PALETTE[i])
        xe, Ye = data.grid(res, "m", lambda c, a: float(a["exact_summary_norm"]))
        style.rate_series(ax, xe, Ye, label=f"{feat}: exact", color=style.PALETTE[i], linestyle="--",
                          marker="none", band=False)
        xs_all = xs if xs_all is None else np.union1d(xs_all, xs)
    ref_y = float(np.nanmax([float(a["exact_summary_norm"]) for c, a in results if c["m"] == xs_all[0]]))
    style.reference_slope(ax, xs_all, 1.0, through=(xs_all[0], ref_y), label="slope 1", color=style.CONTROL,
                          linestyle=":")
    ax.set_xlabel("prefix length m")
    ax.set_ylabel(r"$\|Z\|_F$")
    _ticks(ax, xs_all)
    style.legend(ax, below=True)


def plot(run: data.Run, *, venue: str = "acl", width: str = DEFAULT_WIDTH):
    return style.labelled_panels(run.results, [(_mse_panel, "(a) validation error"), (_loss_panel, "(b) training"),
                                               (_norm_panel, "(c) summary size")], venue=venue, width=width)

