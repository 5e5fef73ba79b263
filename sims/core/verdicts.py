"""Verdict rows shared by the experiments: rate claims judged by a log-log slope over seeds."""

from __future__ import annotations

import numpy as np

from sims.core.experiment import VerdictRow
from theory.stats import fit_loglog_slope

__all__ = ["SLOPE_TOL", "slope_row", "threshold_m", "welch_interval", "difference_row"]

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


def welch_interval(a, b, *, level: float = 0.95):
    """Mean of ``a - b`` for independent samples with its Welch t-interval: ``(diff, low, high)``.

    With fewer than two samples on either side the interval is ``(-inf, inf)``.
    """
    from scipy import stats  # noqa: PLC0415  (scipy is slow to import; only verdicts need it)

    a, b = np.asarray(a, float).reshape(-1), np.asarray(b, float).reshape(-1)
    diff = float(a.mean() - b.mean())
    if a.size < 2 or b.size < 2:
        return diff, float("-inf"), float("inf")
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = float(np.sqrt(va + vb))
    if se == 0.0:
        return diff, diff, diff
    dof = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    half = float(stats.t.ppf(0.5 + level / 2, dof)) * se
    return diff, diff - half, diff + half


def difference_row(claim, a, b, *, at_least: float, strict: bool = False) -> VerdictRow:
    """Claim ``mean(a) - mean(b) >= at_least`` (``>`` when ``strict``), judged by the Welch interval.

    Pass when the interval lies above ``at_least``, fail when it lies below, undecided when it
    straddles it; the undecided row says roughly how many samples per side would decide it at
    the measured difference and spread.
    """
    diff, lo, hi = welch_interval(a, b)
    predicted = f"{'>' if strict else '>='} {at_least:+.3g}"
    measured = f"{diff:+.3f} [{lo:+.3f}, {hi:+.3f}] ({len(a)} vs {len(b)} seeds)"
    above = lo > at_least if strict else lo >= at_least
    below = hi <= at_least if strict else hi < at_least
    if above or below:
        return VerdictRow(claim, predicted, measured, above, "95% Welch interval of the difference")
    gap = abs(diff - at_least)
    n_now = min(len(a), len(b))
    need = (f"about {int(np.ceil(n_now * ((hi - lo) / 2 / gap) ** 2))} seeds per arm would decide it at this "
            "difference" if gap > 0 else "the difference sits on the threshold: no seed count decides it")
    return VerdictRow.undecided(claim, predicted, measured, f"the 95% Welch interval straddles {at_least:+.3g}: {need}")
