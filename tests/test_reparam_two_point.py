"""The least-favourable two-point test (theory.moe.two_point) and the flat-power rule."""

import jax
import numpy as np
import pytest

from sims.experiments import reparam as rp
from sims.experiments import reparam_identifiability as ri
from sims.experiments import reparam_identifiability_verdict as rv
from theory import InputError
from theory.moe.two_point import likelihood_ratio_test, separation_for_signal, split_pair


def _pair(structure, h, t=0.5):
    frozen, reparam, truth = rp.problem(structure)
    u = np.array([np.cos(0.7), np.sin(0.7)])
    g1 = {k: v[0] for k, v in split_pair(truth, [h], structure=structure, d=2, t=t, u=u).items()}
    return frozen, reparam, truth, g1


@pytest.mark.slow
def test_simulated_power_and_size_match_the_exact_ones():
    frozen, reparam, g0, g1 = _pair("shared_linear", 0.06)
    res = likelihood_ratio_test(frozen, g0, g1, structure="shared_linear", reparam=reparam, key=jax.random.key(1),
                                n=400, reps=600, noise=0.01)
    p, exact = float(np.mean(res.reject)), float(np.mean(res.exact_power))
    assert 0.2 < exact < 0.95  # a case where the power is informative
    assert abs(p - exact) <= 3 * np.sqrt(exact * (1 - exact) / 600)
    size = float(np.mean(res.reject_null))
    assert abs(size - 0.05) <= 3 * np.sqrt(0.05 * 0.95 / 600)


def test_deterministic_given_the_key():
    frozen, reparam, g0, g1 = _pair("nonshared", 0.01)
    a = likelihood_ratio_test(frozen, g0, g1, structure="nonshared", key=jax.random.key(5), n=50, reps=8, noise=0.01)
    b = likelihood_ratio_test(frozen, g0, g1, structure="nonshared", key=jax.random.key(5), n=50, reps=8, noise=0.01)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _signal_slope(structure, exponent, t=0.5):
    """Log-log slope in n of the mean signal Delta for a pair scaled as h = h0 (n0/n)^exponent."""
    ns = np.array([200, 2000, 20000])
    sig = []
    for n in ns:
        frozen, reparam, g0, g1 = _pair(structure, 0.02 * (ns[0] / n) ** exponent, t)
        res = likelihood_ratio_test(frozen, g0, g1, structure=structure, reparam=reparam, key=jax.random.key(0),
                                    n=int(n), reps=4, noise=0.01)
        sig.append(float(np.mean(res.signal)))
    return np.polyfit(np.log(ns), np.log(sig), 1)[0]


@pytest.mark.slow
def test_least_favourable_scalings_keep_the_signal_constant_and_wrong_ones_do_not():
    # non-shared: keys n^-1/2 apart at fixed values -> Delta flat; keys n^-1/4 apart -> Delta ~ n^1/4
    assert _signal_slope("nonshared", 0.5) == pytest.approx(0.0, abs=0.05)
    assert _signal_slope("nonshared", 0.25) == pytest.approx(0.25, abs=0.05)
    # shared: separation n^-1/4 -> flat; the non-shared scaling n^-1/2 -> Delta ~ n^-1/2 (lost)
    assert _signal_slope("shared_linear", 0.25) == pytest.approx(0.0, abs=0.05)
    assert _signal_slope("shared_linear", 0.5) == pytest.approx(-0.5, abs=0.05)


def test_separation_for_signal_hits_the_signal():
    frozen, reparam, truth, _ = _pair("nonshared", 0.01)
    X = jax.random.uniform(jax.random.key(2), (512, 4), jax.numpy.float64, -1, 1)
    h = separation_for_signal(frozen, truth, structure="nonshared", X=X, n=1000, noise=0.01, signal=2.0)
    from theory.moe.identifiability import modulus
    dist = float(modulus(frozen, truth, split_pair(truth, [h], structure="nonshared", d=2), structure="nonshared",
                         X=X).distance[0])
    assert np.sqrt(1000) * dist / 0.01 == pytest.approx(2.0, rel=1e-2)
    with pytest.raises(InputError, match="no separation"):
        separation_for_signal(frozen, truth, structure="nonshared", X=X, n=1000, noise=0.01, signal=1e6)
    with pytest.raises(InputError, match="u"):
        split_pair(truth, [0.1], structure="prompt", d=2)


def test_bad_input_is_refused():
    frozen, reparam, g0, g1 = _pair("prompt", 0.1)
    with pytest.raises(InputError, match="signal 0"):
        likelihood_ratio_test(frozen, g0, g0, structure="prompt", key=jax.random.key(0), n=10, reps=2, noise=0.1)
    with pytest.raises(InputError, match="alpha"):
        likelihood_ratio_test(frozen, g0, g1, structure="prompt", key=jax.random.key(0), n=10, reps=2, noise=0.1,
                              alpha=1.0)
    with pytest.raises(InputError, match="noise"):
        likelihood_ratio_test(frozen, g0, g1, structure="prompt", key=jax.random.key(0), n=10, reps=2, noise=0.0)
    with pytest.raises(InputError, match="n"):
        likelihood_ratio_test(frozen, g0, g1, structure="prompt", key=jax.random.key(0), n=0, reps=2, noise=0.1)


def _pc(slope, lo, hi, p_last=(0.6, 0.7), reps=200):
    return {"slope": slope, "slope_low": lo, "slope_high": hi, "low": np.array([0.5, p_last[0]]),
            "high": np.array([0.7, p_last[1]]), "reps": reps}


def test_flat_rule_pass_fail_undecided():
    assert rv.flat_status(_pc(0.01, -0.04, 0.06), 0.1)[0] == "pass"
    assert rv.flat_status(_pc(0.2, 0.15, 0.25), 0.1)[0] == "fail"  # rising: told apart
    assert rv.flat_status(_pc(0.0, -0.02, 0.02, p_last=(0.96, 1.0)), 0.1)[0] == "fail"  # saturated power
    status, reason = rv.flat_status(_pc(0.05, -0.1, 0.2), 0.1)
    assert status == "undecided" and "replications" in reason


@pytest.mark.slow
def test_two_point_cells_and_verdict_small():
    cfg = ri.IdentifiabilityConfig(parts=("two_point",), n=(100, 1000), reps=60)
    cells = ri.cells(cfg)
    assert {c["scaling"] for c in cells} == {"half", "quarter", "fixed"} and len(cells) == 2 * len(ri.CASES)
    keep = [c for c in cells if (c["structure"], c["scaling"]) in (("nonshared", "half"), ("shared_linear", "fixed"))]
    results = [(c, ri.run(c, key=jax.random.key(i))) for i, c in enumerate(keep)]
    rows = ri.verdict(cfg, results)
    assert len(rows) == 2 and all(r.status in ("pass", "fail", "undecided") for r in rows)
    fixed = [a for c, a in results if c["scaling"] == "fixed"]
    assert float(np.mean(fixed[-1]["reject"])) > float(np.mean(fixed[0]["reject"]))  # fixed pair: told apart


def test_config_refuses_bad_values():
    with pytest.raises(ValueError, match="parts"):
        ri.IdentifiabilityConfig(parts=("rates",))
    with pytest.raises(ValueError, match="noise"):
        ri.IdentifiabilityConfig(noise=float("inf"))
    with pytest.raises(ValueError, match="alpha"):
        ri.IdentifiabilityConfig(alpha=0.7)
    with pytest.raises(ValueError, match=">= 2 distinct n"):
        ri.IdentifiabilityConfig(n=(1000, 1000))
    with pytest.raises(ValueError, match="random"):
        ri.IdentifiabilityConfig(random=1)
    assert ri.IdentifiabilityConfig(parts=("modulus",), n=(1000,)).parts == ("modulus",)
