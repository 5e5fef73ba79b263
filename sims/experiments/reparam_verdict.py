"""The statistics of experiment "reparam": rate slopes over the effective sample size, and the
three-state rows (pass, fail, undecided with the size that would decide) the verdict is made of.

One function, :func:`slope`, fits every slope the verdict reports; ``figures/reparam.py`` calls
the same function on the same stored results, so a legend's slope is the verdict's number.

Slopes are of ``log stat`` against ``log n_eff`` (``n_eff = n (sigma0 / sigma)^2``, see
``sims/experiments/reparam.py``), with ``stat`` over the replications at each ``n_eff``:

- ``"geometric"``: the geometric mean; the OLS fit over every (n_eff, replication) point and its
  t-interval (:func:`theory.stats.fit_loglog_slope`), over replications complete at every n_eff;
- ``"mean"``, ``"rms"``: the mean or root mean square; a percentile bootstrap interval,
  resampling the replications at each n_eff independently (seeded, so deterministic:
  :func:`theory.stats.bootstrap_groups` and :func:`theory.stats.percentile_ci`; every interval of
  this module comes from :mod:`theory.stats`).

Decisions (:func:`decide`), at 95%, by the project's shared rules (:mod:`sims.core.verdicts`;
a geometric-mean row is :func:`sims.core.verdicts.rate_row` itself):

- ``"equals"`` (a rate claim ``slope = p``): the equivalence rule ``decide_band``: pass when the
  interval lies inside ``p +- SLOPE_TOL``, fail when it is disjoint from it, else undecided;
- ``"above"`` (a flattening claim ``slope > p``): ``decide_side``: pass when the whole interval
  lies above ``p``, fail when it lies below ``p``; otherwise undecided.

An undecided row says how many replications per n_eff would shrink the interval enough to decide
(:func:`sims.core.verdicts.seeds_to_decide`, the 1/sqrt(n) law).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from sims.core.experiment import VerdictRow
from sims.core.verdicts import SLOPE_TOL, bound_row, rate_row, decide_band, decide_side, seeds_to_decide
from theory.stats import bootstrap_groups, fit_loglog_slope, mean_ci, percentile_ci

__all__ = ["Slope", "STATS", "table", "fit_shape", "centre", "slope", "band", "measured", "decide", "slope_row",
           "control_row", "ratio_row"]

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


def _complete(y, stat):
    """``y`` (K, R) as an array, over the replications complete at every grid point; ValueError
    for an unknown ``stat``."""
    if stat not in STATS:
        raise ValueError(f"stat must be one of {STATS}, got {stat!r}")
    y = np.asarray(y, float)
    return y[:, np.all(np.isfinite(y), axis=0)]


def centre(y, stat):
    """``stat`` over the replications at each grid point of ``y`` (K, R): the values a slope is fitted
    to (:func:`slope`) and a figure plots.  "geometric": over the replications complete at every
    grid point; "mean", "rms": over each point's finite values.

    Raises:
        ValueError: unknown ``stat``.
    """
    y = np.asarray(y, float)
    z = _complete(y, stat)
    if stat == "geometric":
        return np.exp(np.mean(np.log(z), axis=1)) if z.shape[1] else np.full(len(z), np.nan)
    agg = _agg(stat)
    return np.array([agg(row[np.isfinite(row)]) if np.isfinite(row).any() else np.nan for row in y])


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
    z = _complete(y, stat)
    x = np.asarray(xs, float)
    if stat == "geometric":
        if len(x) < 2 or z.shape[1] < 2:
            return None
        fit = fit_loglog_slope(x, z, level=level)
        return Slope(fit.slope, fit.low, fit.high, x, centre(y, stat), z.shape[1])
    cols = [row[np.isfinite(row)] for row in y]
    if len(x) < 2 or min(len(c) for c in cols) < 2:
        return None
    agg = _agg(stat)
    boot = bootstrap_groups(cols, agg, resamples=draws, seed=seed)  # (draws, K)
    mid = centre(y, stat)
    ci = percentile_ci(np.polyfit(np.log(x), np.log(boot).T, 1)[0], np.polyfit(np.log(x), np.log(mid), 1)[0],
                       level=level)
    return Slope(ci.estimate, ci.low, ci.high, x, mid, min(len(c) for c in cols))


def measured(s: Slope) -> str:
    """``"slope [low, high]"`` as the verdict's rows and the figure's legends print it."""
    return f"{s.slope:.3f} [{s.low:.3f}, {s.high:.3f}]"


def decide(s: Slope, predicted: float, kind: str, *, tol: float = SLOPE_TOL) -> tuple[str, float | None]:
    """``(status, margin)`` of a slope claim by the shared rules (module docstring); ``margin`` is
    the distance from the estimate to the nearest decision edge (for an undecided row's size)."""
    if kind == "equals":
        gap = abs(s.slope - predicted)
        return decide_band(s.low, s.high, predicted, tol), (tol - gap if gap < tol else gap - tol)
    if kind == "above":
        return decide_side(s.low, s.high, predicted, ">"), abs(s.slope - predicted)
    raise ValueError(f"kind must be 'equals' or 'above', got {kind!r}")


def _describe(s: Slope, stat):
    return (f"{s.reps} replications per n_eff, {'t' if stat == 'geometric' else 'bootstrap'} 95% CI; {stat} "
            f"{s.centre[0]:.3g} at n_eff={s.x[0]:.3g} -> {s.centre[-1]:.3g} at n_eff={s.x[-1]:.3g}")


_TOL_WHY = {"equals": "the project's band for a local slope (SLOPE_TOL, docs/verdicts.md); merged-cell rates: "
                      "RMS or mean over replications, bootstrap interval (docs/reparam_model.md section 4)",
            "above": "flattening claim: the whole 95% interval above the shared exponent"}


def slope_row(claim, xs, y, predicted, *, stat="geometric", kind="equals", extra="", blocker="", id="",
              control_of="", quantity="") -> VerdictRow:
    """One rate claim as a row (module docstring).  ``blocker``: a reason the data cannot decide the
    claim whatever the interval (the least-squares minimum not established): the row is then
    undecided, even when the interval alone would pass or fail it.  With ``control_of`` the row is
    the negative control of that claim: it passes (the control is caught) when the test fails."""
    quantity = quantity or f"log-log {_LABEL[stat]} against n_eff"
    base = dict(claim=claim, id=id, target=predicted, tol=SLOPE_TOL if kind == "equals" else None,
                relation=("outside" if kind == "equals" else "<=") if control_of else ("within" if kind == "equals"
                                                                                        else ">"),
                quantity=quantity, tol_why=_TOL_WHY[kind], controls=(control_of,) if control_of else (),
                is_control=bool(control_of), level=0.95)
    if stat == "geometric" and kind == "equals":
        z = _complete(y, stat)
        if len(xs) >= 2 and z.shape[1] >= 2:
            row = rate_row(id, claim, xs, z, predicted=predicted, quantity=quantity, control_of=control_of,
                           tol_why=_TOL_WHY[kind])
            fit = slope(xs, y, stat)
            extra = "; ".join(filter(None, (row.detail, _describe(fit, stat), extra)))
            if blocker and not control_of:
                extra = f"{blocker}; {extra}"
                row = dataclasses.replace(row, status="undecided", passed=False)
            return dataclasses.replace(row, measured=measured(fit), detail=extra)
    s = slope(xs, y, stat)
    if s is None:
        usable = _complete(y, stat).shape[1] if np.size(y) else 0
        return VerdictRow(passed=False, status="undecided", measured="no slope", detail=(
            f"needs >= 2 n_eff values and >= 2 usable replications at each; have {len(xs)} n_eff, {usable} "
            f"complete replications"), **base)
    status, margin = decide(s, predicted, kind)
    if control_of:
        status = {"pass": "fail", "fail": "pass", "undecided": "undecided"}[status]
    detail = _describe(s, stat) + (f"; {extra}" if extra else "")
    need = None
    if blocker and not control_of:  # the optimiser, not the statistics, would decide: neither pass nor fail
        status, detail = "undecided", f"{blocker}; {detail}"
    elif status == "undecided":
        half = (s.high - s.low) / 2
        need = seeds_to_decide(s.reps, half, margin)
        why = (f"the 95% interval (half-width {half:.2f}) straddles a decision edge: about {int(need)} replications "
               f"per n_eff would decide it" if need else "the slope sits on a decision edge: no size decides it")
        detail = f"{why}; {detail}"
    return VerdictRow(passed=status == "pass", status=status, measured=measured(s), estimate=s.slope, low=s.low,
                      high=s.high, detail=detail, n_needed=need, **base)


def control_row(claim, xs, y, predicted, *, stat, kind, wrong, id="", control_of="") -> VerdictRow:
    """Negative control: the claim's own test on its data times ``n_eff^wrong`` (a wrong rate)
    must fail.  The control passes when the test fails, fails when it passes, and is undecided
    (too little power at this size) when the test is undecided."""
    scaled = y * (np.asarray(xs, float) ** wrong)[:, None] if len(xs) else y
    return slope_row(f"control: {claim} (data x n_eff^{wrong:g})", xs, scaled, predicted, stat=stat, kind=kind,
                     id=id, control_of=control_of or "claim")


def ratio_row(claim, a, b, *, level=0.95, draws=2000, seed=0, where="", id="") -> VerdictRow:
    """RMS(a) / RMS(b) > 1 with a bootstrap interval (:func:`sims.core.verdicts.bound_row`)."""
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    kw = dict(bound=1.0, relation=">", quantity=f"RMS ratio non-shared / shared{where}",
              tol_why="one-sided: the whole 95% bootstrap interval above 1")
    if len(a) < 2 or len(b) < 2:
        return VerdictRow(claim, passed=False, status="undecided", id=id, target=1.0, relation=">",
                          detail=f"needs >= 2 values of each; have {len(a)}, {len(b)}")
    rms = _agg("rms")
    boot = bootstrap_groups([a, b], rms, resamples=draws, seed=seed)
    ci = percentile_ci(boot[:, 0] / boot[:, 1], rms(a) / rms(b), level=level)
    return bound_row(id, claim, ci.estimate, ci.low, ci.high, n_now=min(len(a), len(b)), **kw)


def band(y, stat, *, level=0.95, draws=2000, seed=0):
    """Per-grid-point ``(low, high)`` 95% interval of ``stat`` over replications (figures' bands):
    the t-interval of the geometric mean, or the percentile bootstrap of the mean / RMS (NaN where
    fewer than two replications are finite)."""
    vals = [row[np.isfinite(row)] for row in y]
    ok = [i for i, v in enumerate(vals) if len(v) >= 2]
    lo, hi = np.full(len(vals), np.nan), np.full(len(vals), np.nan)
    if stat == "geometric":
        for i in ok:
            ci = mean_ci(np.log(vals[i]), level=level)
            lo[i], hi[i] = np.exp(ci.low), np.exp(ci.high)
    elif ok:
        agg = _agg(stat)
        boot = bootstrap_groups([vals[i] for i in ok], agg, resamples=draws, seed=seed)
        for j, i in enumerate(ok):
            _, lo[i], hi[i] = percentile_ci(boot[:, j], agg(vals[i]), level=level)
    return lo, hi


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
    w_med = [np.median(row[np.isfinite(row)]) if np.isfinite(row).any() else np.nan for row in w]
    twice = np.nanmean(np.where(np.isfinite(nb), nb >= 2, np.nan), axis=1)
    has_oracle = np.isfinite(og)
    beaten = np.array([np.mean(row[ok] > basin_tol) if ok.any() else np.nan for row, ok in zip(og, has_oracle)])
    fmt = lambda vals, f: ", ".join(format(v, f) for v in vals)  # noqa: E731
    with np.errstate(all="ignore"):
        line = (f"per n_eff: best loss reached by >= 2 starts {fmt(twice, '.0%')}; oracle start lower by > "
                f"{basin_tol:g} sigma^2/n {fmt(beaten, '.0%')}; best start converged {fmt(np.nanmean(conv, axis=1), '.0%')}"
                f"; at box edge {fmt(np.nanmean(edge, axis=1), '.0%')}; median lightest merged weight "
                f"{fmt(w_med, '.2g')}; max LM iterations {fmt(np.nanmax(it, axis=1), '.0f')}")
    bad = [x for x, t, b in zip(xs, twice, beaten) if not t >= share_needed or b > 1 - share_needed]
    blocker = (f"the least-squares minimum is not established at n_eff = {', '.join(f'{x:.0e}' for x in bad)}: "
               f"fewer than {share_needed:.0%} of the fits had their best loss reached by two starts, or the start "
               f"near the truth found a lower loss in more than {1 - share_needed:.0%} (more --split-starts, "
               f"--random-starts or --polish-steps)") if bad else ""
    return line, blocker
