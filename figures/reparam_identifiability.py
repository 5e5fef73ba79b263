"""Figure: why shared prompts are identifiable and non-shared ones are not (paper 2).

Reads a stored ``reparam-identifiability`` run.  Every plotted number and every slope in the
legends comes from the verdict's own functions (:func:`modulus_curve`, :func:`approach_curve`,
:func:`power_curve` of :mod:`sims.experiments.reparam_identifiability`) applied to the stored
cells, so the figure shows the verdict's numbers:

(a) the identifiability modulus ``||f_G - f*||_{L2} / D(G, G*)`` per bin of the merged cell's
    location error, for the four structures and the broken-sharing control: the minimised value
    (filled, solid; what the verdict decides on) and the sampled search's smallest (open, dotted);
    values equal to rounding (``||f_G - f*|| <= 1e-12 ||f*||``) sit on the "0" line at the bottom;
(b) non-shared: the ratio along the approach to the equal-key manifold (key separation -> 0 at a
    fixed value separation), predicted slope 1;
(c) the least-favourable two-point pair: the exact power ``Phi(sqrt(n) ||f1 - f0|| / sigma - z)``
    against n, with the exponent k of ``||f1 - f0|| ~ h^k`` in the legend -- the modulus restated
    (no verdict row), for the pairs scaled to stay hidden (solid) and the controls (grey).
"""

from __future__ import annotations


import numpy as np

from figures import common, data, style
from sims.experiments.reparam_identifiability import CASES
from sims.experiments.reparam_identifiability_verdict import approach_curve, modulus_curve, power_curve

EXPERIMENT = "reparam-identifiability"
NAME = "reparam_identifiability"
DEFAULT_WIDTH = "full"

LABEL = {"shared_linear": "shared lin.", "shared_tanh": "shared tanh", "prompt": "prompt", "nonshared": "non-shared"}
COLOR = {"shared_linear": style.PALETTE[0], "shared_tanh": style.PALETTE[2], "prompt": style.PALETTE[3],
         "nonshared": style.PALETTE[1]}
MARKER = {"shared_linear": "o", "shared_tanh": "s", "prompt": "^", "nonshared": "D"}
FLOOR = 1e-4  # where "0 to rounding" is drawn in panel (a)


def _modulus_panel(ax, results):
    rho = None
    for s, variant in (("shared_linear", "standard"), ("shared_tanh", "standard"), ("prompt", "standard"),
                       ("nonshared", "standard"), ("shared_linear", "broken")):
        mc = modulus_curve(results, s, variant)
        if mc is None:
            continue
        rho = mc["rho"]
        control = variant == "broken"
        name = "control: broken sharing" if control else LABEL[s]
        color = style.CONTROL if control else COLOR[s]
        marker = "v" if control else MARKER[s]
        if mc["zero"].any():
            ax.plot(rho, np.where(mc["zero"], FLOOR, mc["minimum"]), marker=marker, color=color, linestyle=":",
                    markersize=3.5, markerfacecolor="white", label=f"{name}: 0 to rounding")
            continue
        tag = f"min. {np.nanmin(mc['best']):.2g}, slope {mc['slope']:.2f}" if mc["slope"] is not None else "0"
        ax.plot(rho, mc["minimum"], marker=marker, color=color, linestyle=":", markersize=3, markerfacecolor="white")
        ax.plot(rho, np.maximum(mc["best"], FLOOR), marker=marker, color=color, linestyle="-", markersize=3.5,
                label=f"{name}: {tag}")
    if rho is None:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        return
    ax.axhline(FLOOR, color=style.REFERENCE, linewidth=0.6, linestyle="--")
    ax.text(rho[0], FLOOR * 1.6, "0 (rounding)", fontsize=6, va="bottom")
    ax.set(xscale="log", yscale="log", xlabel=r"location error $\rho$ of the merged cell",
           ylabel=r"min $\|f_G-f^*\|_{L^2}/D(G,G^*)$ (open: sampled)")
    ax.set_ylim(FLOOR / 3, 1.0)
    style.legend(ax, below=True)


def _approach_panel(ax, results):
    ap = approach_curve(results)
    if ap is None:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        return
    ax.plot(ap["eps"], ap["ratio"], marker=MARKER["nonshared"], color=COLOR["nonshared"], markersize=3.5,
            label=f"non-shared: slope {ap['slope']:.2f}")
    style.reference_slope(ax, ap["eps"], 1.0, through=(ap["eps"][-1], ap["ratio"][-1]), label="predicted slope 1")
    ax.set(xscale="log", yscale="log", xlabel="key half-separation (values 0.1 apart)", ylabel="modulus")
    style.legend(ax, below=True)


def _power_panel(ax, results):
    ns = None
    for s, scaling, control in CASES:
        pc = power_curve(results, s, scaling)
        if pc is None:
            continue
        ns = pc["n"]
        scale = {"half": r"$n^{-1/2}$ keys", "quarter": r"$n^{-1/4}$", "fixed": "fixed"}[scaling]
        if s == "nonshared" and scaling == "quarter":
            scale = r"$n^{-1/4}$ keys"
        name = f"{'control: ' if control else ''}{LABEL[s]}, {scale}"
        color = style.CONTROL if control else COLOR[s]
        ax.plot(pc["n"], pc["power"], marker=MARKER[s], color=color, markersize=3.5,
                linestyle=(":" if s == "nonshared" else "-.") if control else "-",
                markerfacecolor="white" if control else None, label=f"{name}: $k$ = {pc['exponent']:.2f}")
    if ns is None:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        return
    ax.set(xscale="log", xlabel="sample size n", ylabel=r"exact power $\Phi(\sqrt{n}\|f_1-f_0\|/\sigma - z)$",
           ylim=(0, 1.05))
    style.xticks_from(ax, ns)
    style.legend(ax, below=True)


def plot(run: data.Run, *, venue: str = "acl", width: str = DEFAULT_WIDTH):
    narrow = not style.side_by_side(venue, width)
    fig, (a, b, c) = style.panels(3, venue=venue, width=width, panel_aspect=1.5 if not narrow else 0.95)
    _modulus_panel(a, run.results)
    style.panel_label(a, "(a) modulus")
    _approach_panel(b, run.results)
    style.panel_label(b, "(b) equal keys")
    _power_panel(c, run.results)
    style.panel_label(c, "(c) two-point (restated)")
    return fig

