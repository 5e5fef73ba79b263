"""Verdict rows shared by the experiments: rate claims judged by a log-log slope over seeds."""

from __future__ import annotations

import numpy as np

from sims.core.experiment import VerdictRow
from theory.stats import fit_loglog_slope

__all__ = ["SLOPE_TOL", "slope_row", "threshold_m"]

SLOPE_TOL = 0.05  # allowance for finite-m corrections of a local slope (see theory.stats)


def slope_row(claim, ms, values, *, predicted=-0.5, control=False, tol=SLOPE_TOL) -> VerdictRow:
    """Fit ``log values ~ slope log m`` over seeds (``values``: one list per m).

    A claim passes when the slope's 95% interval meets ``predicted +- tol``; a negative
    control passes when it does not (or when the control diverged).
    """
    target = f"{predicted:.3g} +- {tol:g}"
    if len(ms) < 2:
        return VerdictRow(claim, f"slope {target}", "needs >= 2 values of m", False, "run a sweep or --ladder >= 2")
    y = np.array(values, float)
    if not np.all(np.isfinite(y)):
        return VerdictRow(claim, f"slope {'outside ' if control else ''}{target}", "diverged (non-finite values)", control)
    fit = fit_loglog_slope(ms, np.maximum(y, 1e-300))
    measured = f"{fit.slope:.3f} [{fit.low:.3f}, {fit.high:.3f}]"
    ok = fit.consistent_with(predicted, tol)
    if control:
        return VerdictRow(claim, f"slope outside {target}", measured, not ok)
    return VerdictRow(claim, f"slope {target}", measured, ok)


def threshold_m(ms, ok):
    """Smallest m of the grid from which ``ok[m]`` holds at it and at every larger m (None if never)."""
    best = None
    for m in reversed(sorted(ms)):
        if not ok[m]:
            break
        best = m
    return best
