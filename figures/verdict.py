"""Figure: a run's verdict as numbers, one strip per row with an estimate and an interval.

Each strip shows the measured estimate with its interval (the verdict's own ``low``/``high``,
never refitted), the prediction (the band ``target +- tol`` for "within"/"outside", a line at
``target`` with the claimed side shaded for a one-sided claim) and the status.  Negative
controls are grey.  Rows without numbers (a prediction that is not a number) are left out.
Used by the report (:mod:`sims.cli.report`) for every run.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from figures import data, style
from sims.core import store

EXPERIMENT = ""  # any experiment: reads the run named by --run
NAME = "verdict"
DEFAULT_WIDTH = "full"
RUN_HELP = "run id (default: the newest run of any experiment)"

STATUS_COLOR = {"pass": "#009E73", "fail": "#D55E00", "undecided": "#E69F00"}
STATUS_MARK = {"pass": "\u2713", "fail": "\u2717", "undecided": "?"}


def numeric_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows that carry an estimate (the ones this figure can draw), as dicts."""
    ds = [r if isinstance(r, dict) else r.as_dict() for r in rows]
    return [d for d in ds if d.get("estimate") is not None]


def _finite(*vals):
    return [float(v) for v in vals if v is not None and math.isfinite(float(v))]


def _strip(ax, d: dict[str, Any]) -> None:
    est, lo, hi = d["estimate"], d.get("low"), d.get("high")
    lo = est if lo is None else lo
    hi = est if hi is None else hi
    tgt, tol, rel = d.get("target"), d.get("tol") or 0.0, d.get("relation") or "within"
    control = bool(d.get("is_control"))
    color = style.CONTROL if control else style.PALETTE[0]
    span = _finite(est, lo, hi, tgt, None if tgt is None else tgt - tol, None if tgt is None else tgt + tol)
    left, right = (min(span), max(span)) if span else (-1.0, 1.0)
    pad = 0.15 * (right - left) or 0.5 * (abs(right) or 1.0)
    left, right = left - pad, right + pad
    if tgt is not None and math.isfinite(tgt):
        if rel in ("within", "outside"):
            ax.axvspan(tgt - tol, tgt + tol, color=style.REFERENCE, alpha=0.10, linewidth=0)
        elif rel in ("<=", "<"):
            ax.axvspan(left, tgt, color=style.REFERENCE, alpha=0.10, linewidth=0)
        else:
            ax.axvspan(tgt, right, color=style.REFERENCE, alpha=0.10, linewidth=0)
        ax.axvline(tgt, color=style.REFERENCE, linestyle="--", linewidth=0.8)
    a, b = (max(lo, left) if math.isfinite(lo) else left), (min(hi, right) if math.isfinite(hi) else right)
    ax.plot([a, b], [0, 0], color=color, linewidth=2.0, solid_capstyle="butt")
    if math.isfinite(est):
        ax.plot([est], [0], marker="o", color=color, markerfacecolor="white" if control else color)
    ax.set_xlim(left, right)
    ax.set_ylim(-1, 1)
    ax.set_yticks([])
    for side in ("left", "top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(axis="x", labelsize=6, pad=1, length=2)
    status = d.get("status") or "undecided"
    label = f"{d.get('id') or ''} {d.get('short') or d.get('claim') or ''}".strip()
    ax.text(0.0, 1.0, (label[:70] + "\u2026") if len(label) > 71 else label, transform=ax.transAxes, fontsize=6.5,
            va="bottom", ha="left", color=style.CONTROL if control else "black")
    ax.text(1.0, 0.5, " " + STATUS_MARK.get(status, "?"), transform=ax.transAxes, va="center", ha="left",
            color=STATUS_COLOR.get(status, "black"), fontsize=9, fontweight="bold", clip_on=False)


def plot_rows(rows: Sequence[dict[str, Any]], *, venue: str = "acl", width: str = DEFAULT_WIDTH):
    """One strip per numeric row (see the module docstring); None when no row has numbers."""
    ds = numeric_rows(rows)
    if not ds:
        return None
    w, _ = style.figsize(venue, width)
    fig = style.new_figure((w, 0.2 + 0.42 * len(ds)))
    axes = fig.subplots(len(ds), 1, squeeze=False)[:, 0]
    for ax, d in zip(axes, ds):
        _strip(ax, d)
        style.shows(ax, d, panel=f"strip {d.get('id') or ''}".strip())
    axes[-1].set_xlabel("estimate with its interval; prediction dashed, its band shaded", fontsize=6.5)
    return fig


def load(results, run):
    """The run named ``run`` (any experiment), or the newest run of any experiment."""
    path = store.find_manifest(results, run) if run else max(store.list_manifests(results),
                                                             key=lambda p: p.stat().st_mtime_ns)
    m = store.read_manifest(path)
    return data.Run(str(m.get("experiment")), str(m.get("run_id")), path, m, [])


def plot(run: data.Run, *, venue: str = "acl", width: str = DEFAULT_WIDTH):
    fig = plot_rows(run.verdict, venue=venue, width=width)
    if fig is None:
        raise data.MissingResults(f"run {run.run_id} has no verdict row with numbers")
    return fig

