"""The builders added by the verdict audit (issue 25): each can pass, fail and be undecided."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sst

from sims.core import verdicts as V
from sims.experiments import ntk_attention_cost as cost
from sims.experiments import ntk_attention_train as train
from theory import max_movement_slope, stats
from theory.validation import InputError


def test_constant_row_is_an_equivalence_test():
    rng = np.random.default_rng(0)
    C = 2.0
    tight = V.constant_row("1b", "E x = C", C * (1 + 0.02 * rng.standard_normal(50)), constant=C, quantity="q")
    assert tight.status == "pass" and tight.tol == pytest.approx(0.4)
    off = V.constant_row("1b", "E x = C", 1.5 * C * (1 + 0.02 * rng.standard_normal(50)), constant=C, quantity="q")
    assert off.status == "fail"  # a constant 50% off is rejected
    wide = V.constant_row("1b", "E x = C", C * (1 + 0.5 * rng.standard_normal(6)), constant=C, quantity="q")
    assert wide.status == "undecided" and wide.n_needed > 6 and "samples" in wide.detail


def test_threshold_row_fails_only_past_the_theorys_threshold():
    kw = dict(target=0.5, relation=">=", quantity="q", tol_why="w", holds_from=None)
    assert V.threshold_row("2", "c", 0.7, m_top=100, **{**kw, "holds_from": 10}).status == "pass"
    early = V.threshold_row("2", "c", 0.3, m_top=100, m_theory=1e4, **kw)
    assert early.status == "undecided" and early.n_needed == 1e4
    assert V.threshold_row("2", "c", 0.3, m_top=1e5, m_theory=1e4, **kw).status == "fail"
    assert V.threshold_row("2", "c", 0.3, m_top=1e5, **kw).status == "undecided"


def test_band_row_and_open_intervals():
    assert V.band_row("x", "c", 10.0, 10.0, 10.0, target=10.5, tol=2, quantity="q", tol_why="w").passed
    assert V.band_row("x", "c", 14.0, 14.0, 14.0, target=10.5, tol=2, quantity="q", tol_why="w").failed
    open_low = V.band_row("x", "c", 4.0, -math.inf, 4.0, target=5.0, tol=2, quantity="q", tol_why="w")
    assert open_low.status == "undecided"
    assert V.band_row("x", "c", 4.0, -math.inf, 2.0, target=5.0, tol=2, quantity="q", tol_why="w").failed


def test_measured_crossover_interpolates_and_brackets_noise():
    ms = [16, 64, 256, 1024]
    t_n = [1.0, 1.0, 1.0, 1.0]
    t_p = [0.25, 0.5, 2.0, 8.0]  # crossing where log ratio = 0: between 64 and 256, at 128
    est, lo, hi, delta = cost.measured_crossover(ms, t_p, t_n)
    assert est == pytest.approx(128.0) and lo == hi == est and delta == 0
    est, lo, hi, delta = cost.measured_crossover(ms, t_p, [1.0, 1.5, 1.0, 1.0])  # noise x1.5 widens the bracket
    assert lo < est < hi and delta == pytest.approx(math.log(1.5))
    assert cost.measured_crossover(ms, [2.0] * 4, t_n)[1] == 0.0  # slower everywhere: below the grid
    assert cost.measured_crossover(ms, [0.5] * 4, t_n)[2] == math.inf  # never slower: above the grid


def _cost_results(t_p, t_n, ms=(16, 64, 256, 1024), d=8, r=45):
    arrays = lambda i: {"t_prefix": t_p[i], "t_ntk": t_n[i], "r": r, "xla_bytes_prefix": 1e4 * (i + 1),  # noqa: E731
                        "xla_bytes_ntk": 1e4, "state_bytes_prefix": 16.0 * ms[i] * d, "state_bytes_ntk": 8.0 * (r * d + r)}
    return [({"m": m, "feature": "taylor"}, {k: np.asarray(v) for k, v in arrays(i).items()}) for i, m in enumerate(ms)]


def test_cost_crossover_row_is_decided_by_its_prediction():
    """issue 25: the row passed whenever any crossover existed; now it compares with r (d + 2)/(2 d)."""
    cfg = cost.NTKAttentionCostConfig(m=(16, 64, 256, 1024), feature=("taylor",), d=8)
    m_pred = 45 * 10 / 16  # 28.1
    near = [0.5, 2.0, 8.0, 32.0]  # crossing at ~32: within a factor 4 of 28
    far = [1e-3, 1e-3, 0.5, 4.0]  # crossing at ~512: a factor 18 above
    rows = {r.id: r for r in cost.verdict(cfg, _cost_results(near, [1.0] * 4))}
    assert rows["taylor-1"].passed and rows["taylor-1"].target == pytest.approx(math.log2(m_pred))
    assert {r.id: r for r in cost.verdict(cfg, _cost_results(far, [1.0] * 4))}["taylor-1"].failed
    noisy = {r.id: r for r in cost.verdict(cfg, _cost_results(near, [1.0, 30.0, 1.0, 1.0]))}["taylor-1"]
    assert noisy.status == "undecided"  # timing noise wider than the tolerance cannot decide
    assert all(rows[f"taylor-{i}"].passed for i in (2, 3, 4))


def test_train_reaches_exact_is_undecided_while_the_loss_falls():
    falling = np.linspace(2.0, 1.0, 400) + 0.01 * np.random.default_rng(0).standard_normal(400)
    flat = 1.0 + 0.01 * np.random.default_rng(1).standard_normal(400)
    cell = {"m": 4}
    res = lambda losses, mse: [(cell, {"val_mse": np.asarray(mse), "val_mse_exact": np.asarray(1.0),  # noqa: E731
                                      "losses": losses})]
    assert train._reaches_exact(res(falling, 0.5), ()).status == "pass"
    assert train._reaches_exact(res(falling, 2.0), ()).status == "undecided"
    assert train._reaches_exact(res(flat, 2.0), ()).status == "fail"


def test_fit_line_and_the_4b_prediction():
    x = np.arange(6.0)
    y = np.stack([-0.7 * x + 0.05 * np.random.default_rng(s).standard_normal(6) for s in range(3)], axis=1)
    fit = stats.fit_line(x, y)
    ref = sst.linregress(np.repeat(x, 3), y.reshape(-1))
    t = sst.t.ppf(0.975, 16)
    np.testing.assert_allclose([fit.slope, fit.low, fit.high],
                               [ref.slope, ref.slope - t * ref.stderr, ref.slope + t * ref.stderr], rtol=1e-12)
    assert fit.high < 0
    with pytest.raises(InputError, match="finite"):
        stats.fit_line([0.0, 1.0], [0.0, np.inf])
    ms = [250, 1000, 4000]
    s = max_movement_slope(ms, sigma=1.0, input_norm=1.0)
    curve = -0.5 * np.log(ms) + np.sqrt(2 * np.log(ms))
    assert s == pytest.approx(np.polyfit(np.log(ms), curve, 1)[0], rel=1e-12) and -0.5 < s < 0
    with pytest.raises(InputError, match="ms"):
        max_movement_slope([1000], sigma=1.0, input_norm=1.0)
