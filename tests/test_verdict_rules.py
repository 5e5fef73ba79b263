"""The verdict rules of sims.core.verdicts and the statistics of theory.stats (against scipy and by hand)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sst

from sims.core import verdicts as V
from sims.core.experiment import VerdictRow
from theory import stats
from theory.validation import InputError


def _seeded(ms, slope, noise, seeds=4, seed=0):
    rng = np.random.default_rng(seed)
    return [[m**slope * np.exp(noise * rng.standard_normal()) for _ in range(seeds)] for m in ms]


def test_loglog_slope_matches_the_ols_formula():
    ms = np.array([10.0, 100.0, 1000.0, 1e4])
    y = np.array(_seeded(ms, -0.5, 0.1))
    fit = stats.fit_loglog_slope(ms, y)
    lx, ly = np.repeat(np.log(ms), 4), np.log(y).reshape(-1)
    b = np.sum((lx - lx.mean()) * (ly - ly.mean())) / np.sum((lx - lx.mean()) ** 2)
    a = ly.mean() - b * lx.mean()
    se = np.sqrt(np.sum((ly - a - b * lx) ** 2) / (lx.size - 2) / np.sum((lx - lx.mean()) ** 2))
    t = sst.t.ppf(0.975, lx.size - 2)
    np.testing.assert_allclose([fit.slope, fit.low, fit.high], [b, b - t * se, b + t * se], rtol=1e-12)


def test_intervals_cover_at_their_level():
    """Monte Carlo: the t, Welch and Wilson intervals cover the truth about 95% of the time."""
    rng = np.random.default_rng(1)
    hits = np.zeros(3)
    R = 400
    for _ in range(R):
        a, b = rng.normal(1.0, 1.0, 8), rng.normal(0.0, 2.0, 11)
        _, lo, hi = stats.mean_ci(a)
        hits[0] += lo <= 1.0 <= hi
        _, lo, hi = stats.welch_ci(a, b)
        hits[1] += lo <= 1.0 <= hi
        _, lo, hi = stats.wilson_ci(int(rng.binomial(50, 0.3)), 50)
        hits[2] += lo <= 0.3 <= hi
    assert np.all(np.abs(hits / R - 0.95) < 0.04), hits / R


def test_bootstrap_is_seeded_and_brackets_the_statistic():
    x = np.random.default_rng(2).normal(size=40)
    a = stats.bootstrap_ci(x, np.mean, resamples=500, seed=3)
    assert a == stats.bootstrap_ci(x, np.mean, resamples=500, seed=3)
    assert a.low < a.estimate < a.high


@pytest.mark.parametrize("bad", [dict(level=1.5), dict(level=0.0), dict(level=float("nan"))])
def test_bad_levels_are_refused(bad):
    with pytest.raises(InputError, match="level"):
        stats.fit_loglog_slope([1, 2, 3], [1, 2, 3], **bad)
    with pytest.raises(InputError, match="level"):
        stats.mean_ci([1.0, 2.0], **bad)


def test_degenerate_and_complex_inputs_are_refused():
    with pytest.raises(InputError, match="distinct"):
        stats.fit_loglog_slope([2.0, 2.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(InputError, match="real"):
        stats.fit_loglog_slope(np.array([1, 2, 3]) + 0j, [1.0, 2.0, 3.0])
    with pytest.raises(InputError, match="finite"):
        stats.fit_loglog_slope([1.0, np.nan, 3.0], [1.0, 2.0, 3.0])


@settings(max_examples=60, deadline=None)
@given(lo=st.floats(-3, 3), w=st.floats(0, 2), t=st.floats(-3, 3), tol=st.floats(0, 1))
def test_band_rule_is_the_equivalence_test(lo, w, t, tol):
    hi = lo + w
    s = V.decide_band(lo, hi, t, tol)
    inside = t - tol <= lo and hi <= t + tol
    disjoint = hi < t - tol or lo > t + tol
    assert s == ("pass" if inside else "fail" if disjoint else "undecided")


def test_rate_row_passes_fails_and_is_undecided_and_its_control_inverts():
    ms = [10, 100, 1000, 10000]
    good = V.rate_row("1", "x ~ m^-1/2", ms, _seeded(ms, -0.5, 0.02), predicted=-0.5, quantity="q")
    assert good.status == "pass" and good.low >= -0.6 and good.high <= -0.4
    wrong = V.rate_row("1", "x ~ m^-1/2", ms, _seeded(ms, -1.0, 0.02), predicted=-0.5, quantity="q")
    assert wrong.status == "fail"  # the deliberately wrong scaling fails
    noisy = V.rate_row("1", "x ~ m^-1/2", ms[:3], _seeded(ms[:3], -0.5, 1.0, seeds=2), predicted=-0.5, quantity="q")
    assert noisy.status == "undecided" and noisy.n_needed and noisy.n_needed > 2 and "seeds" in noisy.detail
    ctrl = V.rate_row("c1", "control", ms, _seeded(ms, 0.0, 0.02), predicted=-0.5, quantity="q", control_of="1")
    assert ctrl.status == "pass" and ctrl.is_control and ctrl.controls == ("1",)
    missed = V.rate_row("c1", "control", ms, _seeded(ms, -0.5, 0.02), predicted=-0.5, quantity="q", control_of="1")
    assert missed.status == "fail"  # a control that looks like the claim is not caught
    diverged = V.rate_row("1", "x", ms, [[1.0], [np.inf], [1.0], [1.0]], predicted=-0.5, quantity="q")
    assert diverged.status == "fail" and "diverged" in diverged.detail


def test_bound_and_exact_rows():
    assert V.bound_row("b", "e <= 1", 0.5, 0.4, 0.6, bound=1.0, relation="<=", quantity="q", tol_why="w").status == "pass"
    assert V.bound_row("b", "e <= 1", 1.5, 1.4, 1.6, bound=1.0, relation="<=", quantity="q", tol_why="w").status == "fail"
    u = V.bound_row("b", "e <= 1", 0.9, 0.7, 1.1, bound=1.0, relation="<=", quantity="q", tol_why="w", n_now=4)
    assert u.status == "undecided" and u.n_needed > 4
    assert V.exact_row("e", "x = 2", 2.05, target=2.0, tol=0.1, relation="within", quantity="q", tol_why="w").passed
    assert V.exact_row("e", "x = 2", 2.5, target=2.0, tol=0.1, relation="within", quantity="q", tol_why="w").failed


def test_text_is_written_from_the_numbers_and_rows_round_trip():
    ms = [10, 100, 1000]
    row = V.rate_row("1", "x ~ m^-1/2", ms, _seeded(ms, -0.5, 0.02), predicted=-0.5, quantity="q", cells=("a", "b"))
    assert V.predicted_text(row) == "-0.5 ± 0.1"
    assert V.measured_text(row).startswith(f"{row.estimate:.3g} [")
    again = VerdictRow.from_dict(row.as_dict())
    assert again == row and again.cells == ("a", "b")
    legacy = VerdictRow("old", "holds", "min 3", True)
    assert V.predicted_text(legacy) == "holds" and V.measured_text(legacy) == "min 3"


def test_controls_are_a_tuple_stored_as_a_list_and_old_manifests_still_read():
    row = V.exact_row("1", "x <= 1", 0.5, target=1.0, relation="<=", quantity="q", tol_why="w",
                      controls=("c0", "c1"))
    assert row.controls == ("c0", "c1") and row.as_dict()["controls"] == ["c0", "c1"]
    assert "control" not in row.as_dict() and VerdictRow.from_dict(row.as_dict()) == row
    # A manifest written before `controls`: one comma-separated string under "control".
    old = {"claim": "x ~ m^-1/2", "predicted": "", "measured": "", "passed": True, "detail": "", "status": "pass",
           "id": "ntk-gd-kernel_change", "estimate": -0.5, "low": -0.55, "high": -0.45, "level": 0.95,
           "target": -0.5, "tol": 0.1, "relation": "within", "quantity": "q", "tol_why": "w",
           "control": "ntk-gd-kernel_change-c0, ntk-gd-kernel_change-c1, standard-gd-kernel_change",
           "is_control": False, "cells": ["a"], "n_needed": None}
    read = VerdictRow.from_dict(old)
    assert read.controls == ("ntk-gd-kernel_change-c0", "ntk-gd-kernel_change-c1", "standard-gd-kernel_change")
    assert VerdictRow.from_dict({**old, "control": ""}).controls == ()
    assert VerdictRow.from_dict({**old, "control": "1", "is_control": True}).controls == ("1",)
    with pytest.raises(TypeError, match="tuple of ids"):  # a bare string would split into characters
        VerdictRow("x", controls="c1")


def test_wrong_scaling_row_judges_the_claims_fit_against_the_wrong_exponent():
    ms = np.array([10.0, 100.0, 1000.0, 1e4])
    y = _seeded(ms, -0.5, 0.05)
    claim = V.rate_row("1", "x ~ m^-1/2", ms, y, predicted=-0.5, quantity="q")
    for wrong in (0.0, -1.0):
        ctl = V.wrong_scaling_row("1-c", "1", "control", ms, y, wrong=wrong, quantity="q", why="w")
        assert ctl.status == "pass" and ctl.is_control and ctl.controls == ("1",) and ctl.target == wrong
        assert (ctl.estimate, ctl.low, ctl.high) == (claim.estimate, claim.low, claim.high)
    assert V.wrong_scaling_row("1-c", "1", "c", ms, y, wrong=-0.5, quantity="q", why="w").status == "fail"
    bad = [list(v) for v in y]
    bad[0][0] = float("inf")  # the claim's own data diverged: that catches nothing
    row = V.wrong_scaling_row("1-c", "1", "c", ms, bad, wrong=0.0, quantity="q", why="w")
    assert row.status == "undecided" and "not finite" in row.detail
