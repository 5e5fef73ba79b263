"""The statistics of experiment "reparam": rate slopes over the effective sample size, and the
three-state rows (pass, fail, undecided with the size that would decide) the verdict is made of.

One function, :func:`slope`, fits every slope the verdict reports; ``figures/reparam.py`` calls
the same function on the same stored results, so a legend's slope is the verdict's number.

Slopes are of ``log stat`` against ``log n_eff`` (``n_eff = n (sigma0 / sigma)^2``, see
``sims/experiments/reparam.py``), with ``stat`` over the replications at each ``n_eff``:

- ``"geometric"``: the geometric mean; the OLS fit over every (n_eff, replication) point and its
  t-interval (:func:`theory.stats.fit_loglog_slope`), over replications complete at every n_eff;
- ``"mean"``, ``"rms"``: the mean or root mean square; a percentile bootstrap interval,
  resampling the replications at each n_eff independently (seeded, so deterministic).

Decisions (:func:`decide`), at 95%:

- ``"equals"`` (a rate claim ``slope = p``): pass when the interval meets ``p +- SLOPE_TOL``
  (the project's allowance for finite-size corrections of a local slope,
  :data:`sims.core.verdicts.SLOPE_TOL`) and lies below ``p / 2`` (so it also rules out the slower
  rate ``p / 2``, halfway to no decay); fail when the interval misses ``p +- SLOPE_TOL``;
  otherwise undecided;
- ``"above"`` (a flattening claim ``slope > p``): pass when the whole interval lies above ``p``;
  fail when it lies below ``p``; otherwise undecided.

An undecided row says how wide the interval is and the number of replications (at this n_eff
grid) or the n_eff range (at these replications) that would shrink it enough to decide, from
half-width ~ 1 / (sqrt(replications) * decades of n_eff).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import stats as _st

from sims.core.experiment import VerdictRow
from sims.core.verdicts import SLOPE_TOL
from theory.stats import fit_loglog_slope

__all__ = ["Slope", "STATS", "table", "fit_shape", "slope", "band", "measured", "decide", "slope_row", "control_row",
           "ratio_row"]

STATS = ("geometric", "mean", "rms")
_LABEL = {"geometric": "slope", "mean": "slope of mean", "rms": "slope of RMS"}


class Slope(NamedTuple):
    """A fitted slope and its 95% interval; ``x`` (K,), ``centre`` (K,) the statistic per n_eff,
    ``reps`` the replications used (fewest over n_eff)."""

    slope: float
    low: float
    high: float
    x: np.ndarray
    centre: np.ndarray
    reps: int


def table(results, structure, L, metric, *, axis="n_eff", bound=None, scale=None, positive=True):
    """``xs`` and a (len(xs), reps) array of ``metric`` for the rate cells of one structure and L.

    Non-finite values (and, with ``positive``, non-positive ones) are NaN.  ``bound``: only cells
    with that ``bound``.  ``scale``: a function of ``xs`` (K,) multiplying the rows.
    """
    rows = [(c, a) for c, a in results if c.get("kind", "rate") == "rate" and c["structure"] == structure
            and c["L"] == L and (bound is None or c.get("bound") == bound)]
    xs = sorted({c.get(axis, c["n"]) for c, _ in rows})
    seeds = sorted({c["seed"] for c, _ in rows})
    y = np.full((len(xs), len(seeds)), np.nan)
    for c, a in rows:
        v = float(a[metric]) if metric in a else np.nan
        y[xs.index(c.get(axis, c["n"])), seeds.index(c["seed"])] = v if np.isfinite(v) and (v > 0 or not positive) \
            else np.nan
    if scale is not None and xs:
        y = y * np.asarray(scale(np.asarray(xs, float)))[:, None]
    return xs, y


def _agg(stat):
    if stat == "mean":
        return lambda v: np.mean(v, axis=-1)
    return lambda v: np.sqrt(np.mean(v ** 2, axis=-1))


def slope(xs, y, stat, *, level=0.95, draws=2000, seed=0) -> Slope | None:
    """The log-log slope of ``stat`` over replications against ``xs`` and its interval.

    Args:
        xs: (K,) positive grid; y: (K, R) positive values, NaN where missing.
        stat: one of :data:`STATS`.
    Returns:
        :class:`Slope`, or None when fewer than 2 grid points or 2 usable replications.
    Raises:
        ValueError: unknown ``stat``.
    """
    if stat not in STATS:
        raise ValueError(f"stat must be one of {STATS}, got {stat!r}")
    x = np.asarray(xs, float)
    if stat == "geometric":
        z = y[:, np.all(np.isfinite(y), axis=0)]
        if len(x) < 2 or z.shape[1] < 2:
            return None
        fit = fit_loglog_slope(x, z, level=level)
        return Slope(fit.slope, fit.low, fit.high, x, np.exp(np.mean(np.log(z), axis=1)), z.shape[1])
    cols = [row[np.isfinite(row)] for row in y]
    if len(x) < 2 or min(len(c) for c in cols) < 2:
        return None
    agg = _agg(stat)
    rng = np.random.default_rng(seed)
    boot = np.stack([agg(c[rng.integers(0, len(c), (draws, len(c)))]) for c in cols], axis=1)  # (draws, K)
    bs = np.polyfit(np.log(x), np.log(boot).T, 1)[0]
    lo, hi = np.quantile(bs, [0.5 - level / 2, 0.5 + level / 2])
    centre = np.array([agg(c) for c in cols])
    return Slope(float(np.polyfit(np.log(x), np.log(centre), 1)[0]), float(lo), float(hi), x, centre,
                 min(len(c) for c in cols))


def measured(s: Slope) -> str:
    """``"slope [low, high]"`` as the verdict's rows and the figure's legends print it."""
    return f"{s.slope:.3f} [{s.low:.3f}, {s.high:.3f}]"


def decide(s: Slope, predicted: float, kind: str, *, tol: float = SLOPE_TOL) -> tuple[str, str]:
    """``(status, reason)`` of a slope claim (module docstring); ``reason`` is empty unless undecided."""
    if kind == "equals":
        if s.high < predicted - tol or s.low > predicted + tol:
            return "fail", ""
        if s.high < predicted / 2:
            return "pass", ""
        need = abs(predicted / 2 - s.slope)  # the half-width that would exclude predicted / 2
    elif kind == "above":
        if s.low > predicted:
            return "pass", ""
        if s.high < predicted:
            return "fail", ""
        need = abs(s.slope - predicted)
    else:
        raise ValueError(f"kind must be 'equals' or 'above', got {kind!r}")
    half = (s.high - s.low) / 2
    decades = math.log10(s.x[-1] / s.x[0])
    if need < 0.02:
        return "undecided", (f"interval half-width {half:.2f}; the estimate {s.slope:.2f} sits at the decision "
                             f"boundary, no affordable size decides it")
    factor = (half / need) ** 2
    return "undecided", (f"interval too wide at this size (half-width {half:.2f}, needs < {need:.2f}): about "
                         f"{math.ceil(s.reps * factor)} replications on this n_eff grid, or n_eff over "
                         f"{decades * math.sqrt(factor):.1f} decades (now {decades:.1f}) would decide it")


def _describe(s: Slope, stat):
    return (f"{s.reps} replications per n_eff, {'t' if stat == 'geometric' else 'bootstrap'} 95% CI; {stat} "
            f"{s.centre[0]:.3g} at n_eff={s.x[0]:.3g} -> {s.centre[-1]:.3g} at n_eff={s.x[-1]:.3g}")


def _predicted(stat, predicted, kind):
    if kind == "above":
        return f"{_LABEL[stat]} > {predicted:g} (whole CI)"
    return f"{_LABEL[stat]} {predicted:g} +- {SLOPE_TOL:g}"


def slope_row(claim, xs, y, predicted, *, stat="geometric", kind="equals", extra="", blocker="") -> VerdictRow:
    """One rate claim as a row (module docstring).  ``blocker``: a reason the data cannot decide the
    claim whatever the interval (fits that stopped before the statistical resolution): the row is
    then undecided, even when the interval alone would pass or fail it."""
    pred = _predicted(stat, predicted, kind)
    s = slope(xs, y, stat)
    if s is None:
        usable = int(np.sum(np.all(np.isfinite(y), axis=0))) if np.size(y) else 0
        return VerdictRow.undecided(claim, pred, "no slope", f"needs >= 2 n_eff values and >= 2 usable "
                                    f"replications at each; have {len(xs)} n_eff, {usable} complete replications")
    text = measured(s)
    detail = _describe(s, stat) + (f"; {extra}" if extra else "")
    status, reason = decide(s, predicted, kind)
    if blocker:  # the optimiser, not the statistics, would decide: neither pass nor fail
        status, reason = "undecided", blocker
    if status == "undecided":
        return VerdictRow.undecided(claim, pred, text, f"{reason}; {detail}")
    return VerdictRow(claim, pred, text, status == "pass", detail)


def control_row(claim, xs, y, predicted, *, stat, kind, wrong) -> VerdictRow:
    """Negative control: the claim's own test on its data times ``n_eff^wrong`` (a wrong rate)
    must fail.  The control passes when the test fails, fails when it passes, and is undecided
    (too little power at this size) when the test is undecided."""
    scaled = y * (np.asarray(xs, float) ** wrong)[:, None] if len(xs) else y
    inner = slope_row(claim, xs, scaled, predicted, stat=stat, kind=kind)
    pred = f"test '{inner.predicted}' fails on data x n_eff^{wrong:g}"
    if inner.status == "undecided":
        return VerdictRow.undecided(f"control: {claim}", pred, inner.measured, inner.detail)
    return VerdictRow(f"control: {claim}", pred, inner.measured, inner.status == "fail", inner.detail)


def ratio_row(claim, a, b, *, level=0.95, draws=2000, seed=0, where="") -> VerdictRow:
    """RMS(a) / RMS(b) > 1 with a bootstrap interval: pass above 1, fail below, else undecided."""
    pred = "RMS ratio > 1 (whole CI)"
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) < 2 or len(b) < 2:
        return VerdictRow.undecided(claim, pred, "no ratio", f"needs >= 2 values of each; have {len(a)}, {len(b)}")
    rms = _agg("rms")
    rng = np.random.default_rng(seed)
    boot = rms(a[rng.integers(0, len(a), (draws, len(a)))]) / rms(b[rng.integers(0, len(b), (draws, len(b)))])
    lo, hi = np.quantile(boot, [0.5 - level / 2, 0.5 + level / 2])
    r = rms(a) / rms(b)
    measured = f"{r:.3g} [{lo:.3g}, {hi:.3g}]{where}"
    if lo > 1 or hi < 1:
        return VerdictRow(claim, pred, measured, bool(lo > 1), "95% bootstrap CI")
    need = math.ceil(min(len(a), len(b)) * (np.log(hi / lo) / 2 / max(abs(np.log(r)), 1e-3)) ** 2)
    return VerdictRow.undecided(claim, pred, measured,
                                f"interval contains 1; about {need} replications would decide it")


def band(y, stat, *, level=0.95, draws=2000, seed=0):
    """Per-grid-point ``(low, high)`` 95% interval of ``stat`` over replications (figures' bands):
    the t-interval of the geometric mean, or the percentile bootstrap of the mean / RMS."""
    lo, hi = [], []
    rng = np.random.default_rng(seed)
    for row in y:
        v = row[np.isfinite(row)]
        if len(v) < 2:
            lo.append(np.nan), hi.append(np.nan)
            continue
        if stat == "geometric":
            m = np.mean(np.log(v))
            half = _st.t.ppf(0.5 + level / 2, len(v) - 1) * np.std(np.log(v), ddof=1) / np.sqrt(len(v))
            lo.append(np.exp(m - half)), hi.append(np.exp(m + half))
        else:
            b = _agg(stat)(v[rng.integers(0, len(v), (draws, len(v)))])
            q = np.quantile(b, [0.5 - level / 2, 0.5 + level / 2])
            lo.append(q[0]), hi.append(q[1])
    return np.array(lo), np.array(hi)


def fit_shape(results, s, L, bound, share_needed, basin_tol=0.1):
    """``(line, blocker)`` for the fits of one structure and L: one line on the optimiser's outcome
    and the fit shape per n_eff, and a blocker, non-empty when at some n_eff the lowest loss is not
    trusted to be the least-squares minimum: fewer than ``share_needed`` of the fits had their best
    loss reached by two or more truth-free starts (within ``basin_tol`` sigma_hat^2/n), or more than
    ``1 - share_needed`` of them lie more than ``basin_tol`` above the diagnostic start near the truth.

    The line gives per n_eff: the share of fits whose best was reached twice, the share the oracle
    start beat, the share whose best start reached the resolution rule, the share at the box edge,
    the median lightest merged weight and the largest LM iteration count of a returned start."""
    xs, nb = table(results, s, L, "n_best", bound=bound, positive=False)
    if not xs:
        return "", ""
    _, og = table(results, s, L, "oracle_gap", bound=bound, positive=False)
    conv, edge, w, it = (table(results, s, L, m, bound=bound, positive=m == "extra_weight")[1]
                         for m in ("converged", "at_edge", "extra_weight", "iterations"))
    twice = np.nanmean(np.where(np.isfinite(nb), nb >= 2, np.nan), axis=1)
    has_oracle = np.isfinite(og)
    beaten = np.array([np.mean(row[ok] > basin_tol) if ok.any() else np.nan for row, ok in zip(og, has_oracle)])
    fmt = lambda vals, f: ", ".join(format(v, f) for v in vals)  # noqa: E731
    with np.errstate(all="ignore"):
        line = (f"per n_eff: best loss reached by >= 2 starts {fmt(twice, '.0%')}; oracle start lower by > "
                f"{basin_tol:g} sigma^2/n {fmt(beaten, '.0%')}; best start converged {fmt(np.nanmean(conv, axis=1), '.0%')}"
                f"; at box edge {fmt(np.nanmean(edge, axis=1), '.0%')}; median lightest merged weight "
                f"{fmt(np.nanmedian(w, axis=1), '.2g')}; max LM iterations {fmt(np.nanmax(it, axis=1), '.0f')}")
    bad = [x for x, t, b in zip(xs, twice, beaten) if not t >= share_needed or b > 1 - share_needed]
    blocker = (f"the least-squares minimum is not established at n_eff = {', '.join(f'{x:.0e}' for x in bad)}: "
               f"fewer than {share_needed:.0%} of the fits had their best loss reached by two starts, or the start "
               f"near the truth found a lower loss in more than {1 - share_needed:.0%} (more --split-starts, "
               f"--random-starts or --polish-steps)") if bad else ""
    return line, blocker
