"""The least-favourable two-point test (theory.moe.two_point): the exact power, checked by simulation once."""

import jax
import numpy as np
import pytest

from sims.experiments import reparam_problem as rp
from sims.experiments import reparam_identifiability as ri
from sims.experiments import reparam_identifiability_verdict as rv
from theory import InputError
from theory.moe.identifiability import modulus
from theory.moe.two_point import exact_power, likelihood_ratio_test, separation_for_signal, split_pair


def _pair(structure, h, t=0.5):
    frozen, reparam, truth = rp.problem(structure)
    u = np.array([np.cos(0.7), np.sin(0.7)])
    g1 = {k: v[0] for k, v in split_pair(truth, [h], structure=structure, d=2, t=t, u=u).items()}
    return frozen, reparam, truth, g1


def test_simulated_power_matches_the_closed_form():
    # the one use of the simulation: a check that Phi(sqrt(n) ||f1 - f0|| / sigma - z) is the power
    frozen, reparam, g0, g1 = _pair("shared_linear", 0.06)
    n, reps = 200, 400
    res = likelihood_ratio_test(frozen, g0, g1, structure="shared_linear", reparam=reparam, key=jax.random.key(1),
                                n=n, reps=reps, noise=0.01)
    Xl = jax.random.uniform(jax.random.key(9), (4096, 4), jax.numpy.float64, -1, 1)
    dist = float(modulus(frozen, g0, {k: v[None] for k, v in g1.items()}, structure="shared_linear", X=Xl,
                         reparam=reparam).distance[0])
    exact = float(exact_power(dist, n, noise=0.01))
    assert 0.2 < exact < 0.95  # a case where the power is informative
    assert abs(float(np.mean(res.reject)) - exact) <= 3 * np.sqrt(exact * (1 - exact) / reps)
    assert abs(float(np.mean(res.exact_power)) - exact) <= 0.02  # input sampling barely moves it at n = 200
    assert abs(float(np.mean(res.reject_null)) - 0.05) <= 3 * np.sqrt(0.05 * 0.95 / reps)


def test_exact_power_formula():
    assert float(exact_power(0.0, 100, noise=1.0)) == pytest.approx(0.05, abs=1e-12)
    # sqrt(n) d / sigma = z_0.95 + 1 -> Phi(1)
    z = 1.6448536269514722
    assert float(exact_power((z + 1) / 10, 100, noise=1.0)) == pytest.approx(0.8413447460685429, rel=1e-10)
    p = exact_power(1e-3, np.array([10, 100, 1000, 10000]), noise=0.01)
    assert np.all(np.diff(p) > 0)
    with pytest.raises(InputError, match="distance"):
        exact_power(-1.0, 10, noise=1.0)
    with pytest.raises(InputError, match="n must"):
        exact_power(1.0, 0, noise=1.0)
    with pytest.raises(InputError, match="alpha"):
        exact_power(1.0, 10, noise=1.0, alpha=1.0)


def test_deterministic_given_the_key():
    frozen, reparam, g0, g1 = _pair("nonshared", 0.01)
    a = likelihood_ratio_test(frozen, g0, g1, structure="nonshared", key=jax.random.key(5), n=50, reps=8, noise=0.01)
    b = likelihood_ratio_test(frozen, g0, g1, structure="nonshared", key=jax.random.key(5), n=50, reps=8, noise=0.01)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _exponent(structure, t=0.5):
    """Log-log slope of ||f1 - f0|| in the separation h of :func:`split_pair`."""
    frozen, reparam, truth, _ = _pair(structure, 0.01, t)
    u = np.array([np.cos(0.7), np.sin(0.7)])
    hs = np.logspace(-4, -2, 5)
    X = jax.random.uniform(jax.random.key(2), (256, 4), jax.numpy.float64, -1, 1)
    d = modulus(frozen, truth, split_pair(truth, hs, structure=structure, d=2, t=t, u=u), structure=structure, X=X,
                reparam=reparam).distance
    return np.polyfit(np.log(hs), np.log(np.asarray(d)), 1)[0]


def test_the_pairs_restate_the_modulus_exponents():
    # ||f1 - f0|| ~ h (non-shared keys apart, values fixed) and ~ h^2 (shared): so the power, a function of
    # n ||f1 - f0||^2 only, is flat for h ~ n^-1/2 and h ~ n^-1/4 respectively; the other exponent is far
    assert _exponent("nonshared") == pytest.approx(1.0, abs=0.05)
    assert _exponent("shared_linear") == pytest.approx(2.0, abs=0.05)
    assert _exponent("prompt") == pytest.approx(2.0, abs=0.05)


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


def test_two_point_cells_are_exact_and_not_claims():
    cfg = ri.IdentifiabilityConfig(parts=("two_point",), n=(100, 1000, 10000), n_mc=256)
    cells = ri.cells(cfg)
    assert {c["scaling"] for c in cells} == {"half", "quarter", "fixed"} and len(cells) == 3 * len(ri.CASES)
    keep = [c for c in cells if (c["structure"], c["scaling"]) in (("nonshared", "half"), ("shared_linear", "fixed"),
                                                                   ("shared_linear", "quarter"))]
    results = [(c, ri.run(c, key=jax.random.key(0))) for c in keep]
    assert ri.verdict(cfg, results) == []  # a restatement of the modulus: no verdict rows
    hidden, told, lin = (rv.power_curve(results, *k) for k in (("nonshared", "half"), ("shared_linear", "fixed"),
                                                               ("shared_linear", "quarter")))
    assert hidden["power"] == pytest.approx(np.full(3, hidden["power"][0]), abs=0.02)  # flat: h ~ n^-1/2, k = 1
    assert lin["power"] == pytest.approx(np.full(3, lin["power"][0]), abs=0.02)  # flat: h ~ n^-1/4, k = 2
    assert told["power"][-1] > 0.99 and told["power"][0] < 0.9  # fixed pair: told apart
    assert hidden["exponent"] == pytest.approx(1.0, abs=0.05) and lin["exponent"] == pytest.approx(2.0, abs=0.05)
    again = ri.run(keep[0], key=jax.random.key(7))
    assert float(again["power"]) == float(results[0][1]["power"])  # deterministic: no simulation


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
