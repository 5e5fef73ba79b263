"""Figure: why shared prompts are identifiable and non-shared ones are not (paper 2).

Reads a stored ``reparam-identifiability`` run.  The curves are the stored cells through the
verdict's own functions (:func:`modulus_curve`, :func:`approach_curve`, :func:`power_curve` of
:mod:`sims.experiments.reparam_identifiability_verdict`); every number in the legends of (a) and (b), the
line through (b)'s points and its reference are the stored verdict rows' (``M1a`` ... ``C2``,
:func:`~sims.experiments.reparam_identifiability_verdict.modulus_ids`): nothing is refitted or judged here.

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
from sims.experiments.reparam_identifiability_verdict import approach_curve, modulus_curve, modulus_ids, power_curve

EXPERIMENT = "reparam-identifiability"
NAME = "reparam_identifiability"
DEFAULT_WIDTH = "full"

LABEL = {"shared_linear": "shared lin.", "shared_tanh": "shared tanh", "prompt": "prompt", "nonshared": "non-shared"}
COLOR = {"shared_linear": style.PALETTE[0], "shared_tanh": style.PALETTE[2], "prompt": style.PALETTE[3],
         "nonshared": style.PALETTE[1]}
MARKER = {"shared_linear": "o", "shared_tanh": "s", "prompt": "^", "nonshared": "D"}
FLOOR = 1e-4  # where "0 to rounding" is drawn in panel (a)


def _rows(verdict, structure, variant="standard"):
    """The stored verdict rows of one modulus curve (level, flatness; zero bins; the control), those present."""
    out = []
    for rid in modulus_ids(structure, variant):
        try:
            out.append(data.verdict_row(verdict, rid))
        except data.MissingResults:  # a run stored before these rows existed
            pass
    return out


def _tag(rows):
    """The legend text of a modulus curve: each of its rows' stored estimate and status."""
    parts = []
    for d in rows:
        mark = style.STATUS_MARK.get(d.get("status"), "?")
        est = d.get("estimate")
        what = str(d.get("quantity") or "")
        if est is None:
            parts.append(f"{d.get('measured') or 'n/a'} {mark}")
        elif what.startswith("log-log slope"):
            parts.append(f"slope {est:.2f} {mark}")
        elif what.startswith("bins"):
            parts.append(f"0 in {est:.0f} bins {mark}")
        else:
            parts.append(f"min. {est:.2g} {mark}")
    return ", ".join(parts) or "no verdict row"


def _modulus_panel(ax, results, verdict=()):
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
        # The curve is the data (per-bin minima); the legend holds the stored rows' numbers, not a refit.
        rows = _rows(verdict, s, variant)
        level_rows = [d for d in rows if not str(d.get("quantity") or "").startswith("log-log slope")]
        style.shows(ax, *level_rows)
        if mc["zero"].any():
            ax.plot(rho, np.where(mc["zero"], FLOOR, mc["minimum"]), marker=marker, color=color, linestyle=":",
                    markersize=3.5, markerfacecolor="white", label=f"{name}: {_tag(level_rows)}")
            continue
        style.shows(ax, *rows)
        ax.plot(rho, mc["minimum"], marker=marker, color=color, linestyle=":", markersize=3, markerfacecolor="white")
        ax.plot(rho, np.maximum(mc["best"], FLOOR), marker=marker, color=color, linestyle="-", markersize=3.5,
                label=f"{name}: {_tag(rows)}")
    if rho is None:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        return
    ax.axhline(FLOOR, color=style.REFERENCE, linewidth=0.6, linestyle="--")
    ax.text(rho[0], FLOOR * 1.6, "0 (rounding)", fontsize=6, va="bottom")
    ax.set(xscale="log", yscale="log", xlabel=r"location error $\rho$ of the merged cell",
           ylabel=r"min $\|f_G-f^*\|_{L^2}/D(G,G^*)$ (open: sampled)")
    ax.set_ylim(FLOOR / 3, 1.0)
    style.legend(ax, below=True)


def _approach_panel(ax, results, verdict=()):
    ap = approach_curve(results)
    if ap is None:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        return
    row = next((d for d in _rows(verdict, "nonshared") if str(d.get("quantity") or "").startswith("log-log slope")),
               None)
    ax.plot(ap["eps"], ap["ratio"], marker=MARKER["nonshared"], color=COLOR["nonshared"], markersize=3.5,
            linestyle="none")
    if row is None or not style.verdict_line(ax, ap["eps"], ap["ratio"], row, color=COLOR["nonshared"]):
        ax.plot(ap["eps"], ap["ratio"], color=COLOR["nonshared"], linewidth=0.6)
    ax.plot([], [], marker=MARKER["nonshared"], color=COLOR["nonshared"], markersize=3.5,
            label="non-shared: " + (style.verdict_label(row) if row is not None else "no verdict row"))
    target = float(row["target"]) if row is not None and row.get("target") is not None else 1.0
    style.reference_slope(ax, ap["eps"], target, through=(ap["eps"][-1], ap["ratio"][-1]),
                          label=f"predicted slope {target:g}")
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
    _modulus_panel(a, run.results, run.verdict)
    style.panel_label(a, "(a) modulus")
    _approach_panel(b, run.results, run.verdict)
    style.panel_label(b, "(b) equal keys")
    _power_panel(c, run.results)
    style.panel_label(c, "(c) two-point (restated)")
    return fig

