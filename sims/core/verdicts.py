"""How a verdict is decided, and written: the row builders every experiment uses.

One rule per kind of claim (``docs/verdicts.md`` says why each is what it is):

- a **rate** ("X ~ m^p"): the log-log OLS slope over every (m, seed) point with its 95%
  t-interval (:func:`theory.stats.fit_loglog_slope`) is judged by the equivalence rule
  :func:`decide_band` against ``p +- SLOPE_TOL``: pass when the interval lies inside the band,
  fail when it is disjoint from it, undecided otherwise (with the seeds that would decide it).
  A negative control is "caught" (its row passes) when its interval is disjoint from the band;
  :func:`wrong_scaling_row` is the control of a rate on its own data, judged against a
  deliberately wrong exponent.
- a **one-sided** claim ("difference >= a", "error <= bound"): pass when the whole interval is on
  the claimed side, fail when the whole interval is on the other, else undecided
  (:func:`decide_side`).
- an **exact** (deterministic) number against its prediction within a stated tolerance.

Rows carry the numbers (:class:`sims.core.experiment.VerdictRow`); their text is written from the
numbers by :func:`predicted_text` and :func:`measured_text`, the one place (the terminal table,
``sims show`` and the report all call them).
"""

from __future__ import annotations

import math

import numpy as np

from sims.core import store
from sims.core.experiment import VerdictRow
from theory import stats

__all__ = ["SLOPE_TOL", "LEVEL", "CONSTANT_RTOL", "decide_band", "decide_side", "rate_row", "wrong_scaling_row",
           "difference_row", "bound_row", "band_row", "constant_row", "exact_row", "threshold_row", "cell_ids",
           "threshold_m", "seeds_to_decide", "predicted_text", "measured_text"]

SLOPE_TOL = 0.1  # half-width of the band around a predicted exponent (docs/verdicts.md, "rates")
LEVEL = 0.95  # confidence level of every interval
CONSTANT_RTOL = 0.2  # relative band around an exact constant, e.g. E m||H(0) - H*||^2 = C (docs/verdicts.md)


def decide_band(low: float, high: float, target: float, tol: float) -> str:
    """Equivalence rule: ``[low, high]`` inside ``[target - tol, target + tol]`` -> "pass",
    disjoint from it -> "fail", else "undecided"."""
    lo_b, hi_b = target - tol, target + tol
    if low >= lo_b and high <= hi_b:
        return "pass"
    if high < lo_b or low > hi_b:
        return "fail"
    return "undecided"


def decide_side(low: float, high: float, bound: float, relation: str) -> str:
    """One-sided rule: the whole interval on the claimed side of ``bound`` -> "pass", the whole
    interval on the other side -> "fail", else "undecided".  ``relation``: ``<=, <, >=, >``."""
    if relation in ("<=", "<"):
        ok = high <= bound if relation == "<=" else high < bound
        bad = low > bound if relation == "<=" else low >= bound
    elif relation in (">=", ">"):
        ok = low >= bound if relation == ">=" else low > bound
        bad = high < bound if relation == ">=" else high <= bound
    else:
        raise ValueError(f"relation must be one of <=, <, >=, >; got {relation!r}")
    return "pass" if ok else "fail" if bad else "undecided"


def seeds_to_decide(n_now: int, half_width: float, margin: float) -> float | None:
    """Samples that would shrink an interval of ``half_width`` (at ``n_now`` samples) below
    ``margin`` (distance from the estimate to the decision edge), by the 1/sqrt(n) law; None when
    the estimate sits on the edge (no size decides it)."""
    if not margin > 0 or not math.isfinite(half_width):
        return None
    return float(max(n_now + 1, math.ceil(n_now * (half_width / margin) ** 2)))


def _status_row(status: str, **kw) -> VerdictRow:
    return VerdictRow(passed=status == "pass", status=status, **kw)


def _links(control_of: str, controls: tuple[str, ...]) -> tuple[str, ...]:
    # A control row links to the claim it controls; a claim row to its controls' ids.
    return (control_of,) if control_of else controls


def rate_row(id: str, claim: str, x, y, *, predicted: float, quantity: str, control_of: str = "",
             controls: tuple[str, ...] = (), cells=(), tol: float = SLOPE_TOL, short: str = "",
             tol_why: str = "") -> VerdictRow:
    """A rate claim ``y ~ x^predicted`` (``y``: one list of seeds per x), or its negative control.

    ``controls``: the ids of the claim's negative-control rows.  With ``control_of`` (a claim's id)
    set the row is the control of that claim: it passes (the control is
    caught) when the slope's interval is disjoint from ``predicted +- tol``, fails when inside,
    and is undecided otherwise.  Non-finite values make a claim fail ("diverged") and a control
    pass.  Fewer than two x make the row undecided.
    """
    base = dict(claim=claim, id=id, short=short, target=predicted, tol=tol, relation="outside" if control_of else "within",
                quantity=quantity, controls=_links(control_of, controls), is_control=bool(control_of),
                cells=tuple(cells), level=LEVEL, tol_why=tol_why or "band for finite-m corrections, narrower than half the gap to "
                                                 "the nearest competing exponent (docs/verdicts.md)")
    x = np.asarray(x, float)
    if x.size < 2 or np.unique(x).size < 2:
        return _status_row("undecided", detail="needs >= 2 values of the rate variable: run a sweep", **base)
    yy = np.array([np.asarray(v, float).reshape(-1) for v in y], dtype=float)
    if not np.all(np.isfinite(yy)) or np.any(yy <= 0):
        what = "diverged (non-finite values)" if not np.all(np.isfinite(yy)) else "non-positive values"
        return _status_row("pass" if control_of else "fail", measured=what, detail=what, **base)
    fit = stats.fit_loglog_slope(x, yy, level=LEVEL)
    status = decide_band(fit.low, fit.high, predicted, tol)
    if control_of:
        status = {"pass": "fail", "fail": "pass", "undecided": "undecided"}[status]
    row = dict(estimate=fit.slope, low=fit.low, high=fit.high, **base)
    if status != "undecided":
        return _status_row(status, **row)
    half = (fit.high - fit.low) / 2
    gap = abs(fit.slope - predicted)
    margin = tol - gap if gap < tol else gap - tol
    seeds = yy.shape[1]
    need = seeds_to_decide(seeds, half, margin) if math.isfinite(half) else None
    if need is None:
        why = ("the interval is unbounded (too few points)" if not math.isfinite(half)
               else "the slope sits on the band's edge: no seed count decides it")
    else:
        why = f"the 95% interval straddles the band's edge: about {int(need)} seeds per point would decide it"
    return _status_row("undecided", detail=why, n_needed=need, **row)


def wrong_scaling_row(id: str, claim_id: str, claim: str, x, y, *, wrong: float, quantity: str, why: str,
                      cells=(), short: str = "", tol: float = SLOPE_TOL) -> VerdictRow:
    """The negative control of a rate claim on the claim's own data: the same fit judged against a
    deliberately wrong exponent ``wrong`` (the exponent a wrong scaling predicts; ``why`` says which).

    It passes (the control is caught) when the slope's interval is disjoint from ``wrong +- tol``,
    fails when it lies inside, and is undecided otherwise, exactly as :func:`rate_row` with
    ``control_of=claim_id``.  It costs no compute and shows that the test can tell the claimed
    exponent from the wrong one at this size.  Non-finite or non-positive data make it undecided
    (unlike an arm control, divergence of the claim's own data catches nothing): the claim row
    already fails on them.
    """
    yy = [np.asarray(v, float).reshape(-1) for v in y]
    if any(v.size and (not np.all(np.isfinite(v)) or np.any(v <= 0)) for v in yy):
        return _status_row("undecided", claim=claim, id=id, short=short, target=wrong, tol=tol, relation="outside",
                           quantity=quantity, controls=(claim_id,), is_control=True, cells=tuple(cells), level=LEVEL,
                           tol_why=why, measured="no slope",
                           detail="the claim's data are not finite and positive: no slope to judge")
    return rate_row(id, claim, x, y, predicted=wrong, quantity=quantity, control_of=claim_id, cells=cells,
                    tol=tol, short=short, tol_why=why)


def difference_row(id: str, claim: str, a, b, *, at_least: float, quantity: str, strict: bool = False,
                   cells=(), short: str = "", tol_why: str = "") -> VerdictRow:
    """Claim ``mean(a) - mean(b) >= at_least`` (``>`` when ``strict``), by the 95% Welch interval;
    undecided when it straddles ``at_least``, saying how many samples per side would decide it."""
    ci = stats.welch_ci(a, b, level=LEVEL)
    relation = ">" if strict else ">="
    status = decide_side(ci.low, ci.high, at_least, relation)
    n_now = min(np.asarray(a).size, np.asarray(b).size)
    row = dict(claim=claim, id=id, short=short, estimate=ci.estimate, low=ci.low, high=ci.high, level=LEVEL,
               target=at_least, relation=relation, quantity=quantity, cells=tuple(cells),
               tol_why=tol_why or "95% Welch interval of the difference of means")
    if status != "undecided":
        return _status_row(status, **row)
    need = seeds_to_decide(n_now, (ci.high - ci.low) / 2, abs(ci.estimate - at_least))
    why = (f"the 95% Welch interval straddles {at_least:+.3g}: about {int(need)} samples per side would decide it"
           if need is not None else "the difference sits on the threshold: no sample count decides it")
    return _status_row("undecided", detail=why, n_needed=need, **row)


def bound_row(id: str, claim: str, estimate: float, low: float, high: float, *, bound: float, relation: str,
              quantity: str, tol_why: str, level: float | None = LEVEL, n_now: int | None = None, cells=(),
              short: str = "", control_of: str = "") -> VerdictRow:
    """A one-sided claim ``estimate <relation> bound`` judged on its interval ``[low, high]``
    (:func:`decide_side`); a deterministic value passes ``low == high == estimate``, level None.
    ``n_now`` (samples behind the interval) lets an undecided row say what size would decide it."""
    status = decide_side(low, high, bound, relation)
    row = dict(claim=claim, id=id, short=short, estimate=estimate, low=low, high=high, level=level, target=bound,
               relation=relation, quantity=quantity, tol_why=tol_why, cells=tuple(cells),
               controls=_links(control_of, ()), is_control=bool(control_of))
    if status != "undecided":
        return _status_row(status, **row)
    need = seeds_to_decide(n_now, (high - low) / 2, abs(estimate - bound)) if n_now else None
    why = f"the interval straddles {bound:.4g}" + (f": about {int(need)} samples would decide it" if need else "")
    return _status_row("undecided", detail=why, n_needed=need, **row)


def band_row(id: str, claim: str, estimate: float, low: float, high: float, *, target: float, tol: float,
             quantity: str, tol_why: str, level: float | None = LEVEL, n_now: int | None = None, cells=(),
             short: str = "", detail: str = "") -> VerdictRow:
    """A two-sided claim ``estimate = target`` within ``tol``, judged on its interval ``[low, high]``
    by the equivalence rule :func:`decide_band` (an exact constant against its mean's t-interval, a
    crossover bracketed by grid points); undecided says what size would decide it when ``n_now``
    (samples behind the interval) is given."""
    row = dict(claim=claim, id=id, short=short, estimate=estimate, low=low, high=high, level=level, target=target,
               tol=tol, relation="within", quantity=quantity, tol_why=tol_why, cells=tuple(cells))
    status = decide_band(low, high, target, tol) if math.isfinite(estimate) else "fail"
    if status != "undecided":
        return _status_row(status, detail=detail, **row)
    gap = abs(estimate - target)
    margin = tol - gap if gap < tol else gap - tol
    need = seeds_to_decide(n_now, (high - low) / 2, margin) if n_now else None
    why = f"the interval straddles the band {target:.4g} ± {tol:.3g}" + (
        f": about {int(need)} samples would decide it" if need else "")
    return _status_row("undecided", detail="; ".join(x for x in (why, detail) if x), n_needed=need, **row)


def constant_row(id: str, claim: str, samples, *, constant: float, quantity: str, rtol: float = CONSTANT_RTOL,
                 cells=(), short: str = "") -> VerdictRow:
    """An exact expectation ``E[sample] = constant``: the samples' mean and its 95% t-interval
    (:func:`theory.stats.mean_ci`) against ``constant (1 +- rtol)`` by the equivalence rule."""
    samples = np.asarray(samples, float).reshape(-1)
    est, low, high = stats.mean_ci(samples, level=LEVEL)
    return band_row(id, claim, est, low, high, target=constant, tol=rtol * abs(constant), quantity=quantity,
                    n_now=samples.size, cells=cells, short=short,
                    tol_why=f"±{rtol:.0%} of the exact constant: it has no finite-m bias, so the band only sets the "
                            f"precision asked for; a constant off by {2 * rtol:.0%} is rejected (docs/verdicts.md)")


def exact_row(id: str, claim: str, value: float, *, target: float, relation: str, quantity: str, tol_why: str,
              tol: float = 0.0, cells=(), short: str = "", control_of: str = "",
              controls: tuple[str, ...] = (), detail: str = "") -> VerdictRow:
    """A deterministic number against its prediction: ``relation`` "within" (``|value - target| <=
    tol``, relative to nothing: give ``tol`` in the value's units), "outside", or one-sided."""
    if relation in ("within", "outside"):
        inside = math.isfinite(value) and abs(value - target) <= tol
        ok = inside if relation == "within" else not inside
    else:
        ok = decide_side(value, value, target, relation) == "pass"
    return _status_row("pass" if ok else "fail", claim=claim, id=id, short=short, estimate=value, low=value,
                       high=value, level=None, target=target, tol=tol, relation=relation, quantity=quantity,
                       tol_why=tol_why, cells=tuple(cells), controls=_links(control_of, controls),
                       is_control=bool(control_of), detail=detail)


def threshold_row(id: str, claim: str, worst: float, *, target: float, relation: str, m_top: int,
                  holds_from: int | None, quantity: str, tol_why: str, m_theory: float | None = None, cells=(),
                  short: str = "", detail: str = "") -> VerdictRow:
    """A claim that holds for m beyond a threshold ("lambda_min(H(0)) >= lambda/2 for m large"),
    checked on every seed at the grid's largest m: ``worst`` (the worst seed there) against
    ``target`` by ``relation``.  Pass when every seed holds; fail only when the grid's largest m
    reaches ``m_theory`` (the threshold the theory states, e.g. a Chebyshev width), else undecided
    (a larger m would decide it: ``n_needed`` is ``m_theory`` when known)."""
    row = dict(claim=claim, id=id, short=short, estimate=worst, low=worst, high=worst, level=None, target=target,
               relation=relation, quantity=quantity, tol_why=tol_why, cells=tuple(cells))
    where = f"holds on every seed from m = {holds_from}" if holds_from is not None else "fails at the largest m"
    detail = "; ".join(x for x in (where, detail) if x)
    if decide_side(worst, worst, target, relation) == "pass":
        return _status_row("pass", detail=detail, **row)
    if m_theory is not None and m_top >= m_theory:
        return _status_row("fail", detail=f"{detail}; the grid reaches the theory's m = {m_theory:.4g}", **row)
    why = (f"the largest m ({m_top}) is below the theory's threshold m = {m_theory:.4g}" if m_theory is not None
           else f"the claim is for m beyond a threshold the theory does not state for this model; a grid beyond "
                f"m = {m_top} would decide it")
    return _status_row("undecided", detail=f"{detail}; {why}", n_needed=m_theory, **row)


def cell_ids(results) -> tuple[str, ...]:
    """The store ids of the cells of ``results`` (``(cell, arrays)`` pairs), for a row's ``cells``."""
    return tuple(store.cell_id(c) for c, _ in results)


def threshold_m(ms, ok):
    """Smallest m of the grid from which ``ok[m]`` holds at it and at every larger m (None if never)."""
    best = None
    for m in reversed(sorted(ms)):
        if not ok[m]:
            break
        best = m
    return best


# ----------------------------------------------------------------------------- text, from the numbers

_REL = {"within": "", "outside": "outside ", "<=": "<= ", ">=": ">= ", "<": "< ", ">": "> "}


def _num(v: float | None) -> str:
    if v is None:
        return "?"
    if not math.isfinite(v):
        return "inf" if v > 0 else "-inf" if v < 0 else "nan"
    return f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"


def predicted_text(row) -> str:
    """The prediction as text: the row's own ``predicted`` when given, else from its numbers."""
    d = row if isinstance(row, dict) else row.as_dict()
    if d.get("predicted"):
        return str(d["predicted"])
    if d.get("target") is None:
        return ""
    rel = d.get("relation") or "within"
    tol = d.get("tol")
    band = f" ± {_num(tol)}" if rel in ("within", "outside") and tol else ""
    return f"{_REL.get(rel, rel + ' ')}{_num(d['target'])}{band}"


def measured_text(row) -> str:
    """The measurement as text: the row's own ``measured`` when given, else estimate [low, high]."""
    d = row if isinstance(row, dict) else row.as_dict()
    if d.get("measured"):
        return str(d["measured"])
    if d.get("estimate") is None:
        return ""
    est, lo, hi = d["estimate"], d.get("low"), d.get("high")
    if lo is None or hi is None or (lo == est == hi):
        return _num(est)
    return f"{_num(est)} [{_num(lo)}, {_num(hi)}]"
