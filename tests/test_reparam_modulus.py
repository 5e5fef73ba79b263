"""The identifiability modulus (theory.moe.identifiability) and its verdict rules."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sims.experiments import reparam_problem as rp
from sims.experiments import reparam_identifiability as ri
from sims.experiments import reparam_identifiability_verdict as rv
from theory import InputError
from theory.moe.identifiability import location_width, modulus, random_configurations, split_configurations
from theory.moe.model import Reparam

X = jax.random.uniform(jax.random.key(3), (512, 4), jnp.float64, -1.0, 1.0)


def _split(structure, delta, *, frac=0.5, atom=0, reparam=None):
    frozen, rpm, truth = rp.problem(structure)
    reparam = reparam or rpm
    delta = np.atleast_2d(delta)
    cfg = split_configurations(truth, structure=structure, atom=atom, delta1=delta,
                               delta2=-frac / (1 - frac) * delta, frac=np.full(len(delta), frac), d=2)
    return modulus(frozen, truth, cfg, structure=structure, X=X, reparam=reparam), cfg, truth


def test_unsplit_configuration_is_the_truth():
    m, cfg, truth = _split("shared_linear", np.zeros((1, 2)), frac=0.3)
    assert float(m.distance[0]) <= 1e-15 and float(m.voronoi[0]) <= 1e-15
    # the two halves carry the true atom's weight: exp(b) sums to exp(b*)
    w = np.exp(np.asarray(cfg["b"][0]))
    assert w[-2:].sum() == pytest.approx(float(np.exp(truth["b"][0])), rel=1e-14)


def test_nonshared_equal_keys_give_the_same_function_exactly():
    # keys equal, values v* +- t e: f_G = f* to rounding, while D = t^2 (power 2) is not small
    for t in (1e-3, 0.1, 0.5):
        m, _, _ = _split("nonshared", [0.0, 0.0, t, -0.3 * t])
        assert float(m.distance[0]) <= 1e-14 * float(m.f_norm)
        assert float(m.voronoi[0]) == pytest.approx(t ** 2 * (1 + 0.09), rel=1e-12)


def test_nonshared_key_separation_gives_linear_decay():
    eps = np.logspace(-6, -2, 5)
    m, _, _ = _split("nonshared", np.stack([eps, 0 * eps, 0.1 + 0 * eps, 0 * eps], 1))
    slope = np.polyfit(np.log(eps), np.log(np.asarray(m.ratio)), 1)[0]
    assert slope == pytest.approx(1.0, abs=0.05)
    assert abs(slope - 2.0) > 0.5 and abs(slope) > 0.5  # wrong scalings are far away


@pytest.mark.slow
def test_shared_split_modulus_is_bounded_below():
    a = np.linspace(0, np.pi, 24, endpoint=False)
    U = np.stack([np.cos(a), np.sin(a)], 1)
    for s in ("shared_linear", "shared_tanh", "prompt"):
        mins = [float(jnp.min(_split(s, r * U)[0].ratio)) for r in (1e-4, 1e-3, 1e-2)]
        assert min(mins) > 0.01, (s, mins)
        assert max(mins) / min(mins) < 1.1, (s, mins)  # flat: second order on both sides


def test_broken_sharing_has_a_flat_direction():
    _, rpm, _ = rp.problem("shared_linear")
    broken = Reparam(rpm.W1.at[:, 1].set(0.0), rpm.W2)
    m, _, _ = _split("shared_linear", [[0.0, 0.05]], reparam=broken)
    assert float(m.distance[0]) <= 1e-14 * float(m.f_norm) and float(m.voronoi[0]) > 1e-3
    m, _, _ = _split("shared_linear", [[0.0, 0.05]])  # the real sharing has none
    assert float(m.ratio[0]) > 0.05


@pytest.mark.slow
def test_random_configurations_scale_with_rho():
    _, _, truth = rp.problem("prompt")
    c1 = random_configurations(truth, structure="prompt", key=jax.random.key(0), count=8, rho_min=1e-3, rho_max=1e-3,
                               d=2)
    c2 = random_configurations(truth, structure="prompt", key=jax.random.key(0), count=8, rho_min=1e-2, rho_max=1e-2,
                               d=2)
    # the split atom's offset scales like rho, every first-order remainder like rho^2 (same shapes)
    step1, step2 = (np.asarray(c["p"][:, -2] - truth["p"][0]) for c in (c1, c2))
    np.testing.assert_allclose(step2, 10 * step1, rtol=1e-10, atol=1e-15)
    other1, other2 = (np.asarray(c["p"][:, 0] - truth["p"][1]) for c in (c1, c2))
    np.testing.assert_allclose(other2, 100 * other1, rtol=1e-8, atol=1e-15)
    moment1, moment2 = (np.asarray(jnp.exp(c["b"][:, -2:])[:, :, None] * (c["p"][:, -2:] - truth["p"][0])).sum(1)
                        for c in (c1, c2))
    assert np.abs(moment1).max() <= 3 * 1e-3 ** 2 and np.abs(moment2).max() <= 3 * 1e-2 ** 2  # O(rho^2), not O(rho)


def test_bad_input_is_refused():
    frozen, rpm, truth = rp.problem("shared_linear")
    d1 = np.zeros((2, 2))
    with pytest.raises(InputError, match="atom"):
        split_configurations(truth, structure="shared_linear", atom=2, delta1=d1, delta2=d1, frac=np.full(2, .5), d=2)
    with pytest.raises(InputError, match="frac"):
        split_configurations(truth, structure="shared_linear", atom=0, delta1=d1, delta2=d1, frac=np.ones(2), d=2)
    with pytest.raises(InputError, match="delta2"):
        split_configurations(truth, structure="shared_linear", atom=0, delta1=d1, delta2=d1[:1], frac=np.full(2, .5),
                             d=2)
    with pytest.raises(InputError, match="structure"):
        location_width("shared", d=2)
    cfg = split_configurations(truth, structure="shared_linear", atom=0, delta1=d1, delta2=d1, frac=np.full(2, .5), d=2)
    with pytest.raises(InputError, match="r must be"):
        modulus(frozen, truth, cfg, structure="shared_linear", X=X, reparam=rpm, r=0.5)
    with pytest.raises(InputError, match="X"):
        modulus(frozen, truth, cfg, structure="shared_linear", X=X[:, :3], reparam=rpm)


def _fake_cell(ratio_of_rho, zero=False, polished=None):
    """A modulus cell whose bin minima follow ``ratio_of_rho`` (to test the rules, not the maths)."""
    rho = ri.RHO
    ratio = ratio_of_rho(rho)
    dist = np.zeros_like(rho) if zero else ratio * rho ** 2
    arrays = {"location_error": rho, "ratio": ratio, "distance": dist, "f_norm": np.asarray(1.0),
              "source": np.zeros(len(rho), int)}
    if polished is not None:
        arrays.update(polish_bin=np.arange(len(rho)), polish_ratio=polished(rho))
    return ({"kind": "modulus", "structure": "shared_linear", "variant": "standard"}, arrays)


def _curve(*a, **k):
    return rv.modulus_curve([_fake_cell(*a, **k)], "shared_linear")


def test_bounded_below_rules_decide_on_the_minimised_values():
    ok = _curve(lambda r: 0.1 + 0 * r, polished=lambda r: 0.01 + 0 * r)
    assert rv._level_row("M", "c", ok).status == "pass" and rv._flat_row("M", "c", ok).status == "pass"
    assert rv._level_row("M", "c", ok).estimate == pytest.approx(0.01)  # the minimised value, not the sampled one
    # sampled values flat and high, minimised ones collapsing: the claim falls on the minimised values
    low = _curve(lambda r: 0.1 + 0 * r, polished=lambda r: 1e-7 + 0 * r)
    assert rv._level_row("M", "c", low).status == "fail"
    assert rv._level_row("C", "c", low, control_of="M").status == "pass"  # a control is caught below FLOOR
    for wrong in (lambda r: 0.1 * (r / r[-1]) ** 0.5, lambda r: 0.1 * (r / r[-1]) ** -0.3):
        assert rv._flat_row("M", "c", _curve(lambda r: 0.2 + 0 * r, polished=wrong)).status == "fail"
    zero = _curve(lambda r: 0.1 + 0 * r, zero=True)
    assert zero["slope"] is None and rv._level_row("M", "c", zero).status == "fail"
    assert rv._flat_row("M", "c", zero).status == "fail"
    assert rv._zero_row("M", "c", zero).status == "pass" and rv._zero_row("M", "c", ok).status == "fail"
    assert rv._zero_row("C", "c", ok, control_of="M").status == "pass"


@pytest.mark.slow
def test_modulus_experiment_small():
    cells = [{"kind": "modulus", "n_mc": 256, "angles": 12, "random": 8, "polish": 2, "seed": 0, "structure": s,
              "variant": v} for s, v in (("shared_linear", "standard"), ("nonshared", "standard"),
                                         ("shared_linear", "broken"))]
    # the non-shared control needs the quick search: from the best 2 off-manifold starts of a tiny search
    # (random 8, n_mc 256) the minimiser stops at 0.0023, a positive local minimum off the manifold
    cells[1] = [c for c in ri.cells(ri.IdentifiabilityConfig(quick=True, parts=("modulus",)))
                if c["structure"] == "nonshared"][0]
    results = [(c, ri.run(c, key=jax.random.key(i))) for i, c in enumerate(cells)]
    rows = ri.verdict(ri.IdentifiabilityConfig(), results)
    assert [r.id for r in rows] == ["M1a", "M1b", "M4a", "C1", "M4b", "C2", "C3"]
    assert all(r.status == "pass" for r in rows), rows
    lin = [a for c, a in results if c["structure"] == "shared_linear" and c["variant"] == "standard"][0]
    assert np.all(lin["polish_ratio"] <= lin["polish_start"] * (1 + 1e-12))


def test_reparam_modulus_command_is_the_modulus_alone():
    from sims.experiments import get

    exp = get("reparam-modulus")
    cells = exp.cells(exp.config())
    assert cells and {c["kind"] for c in cells} == {"modulus"}
    assert {c["kind"] for c in get("reparam-identifiability").cells(get("reparam-identifiability").config())} \
        == {"modulus", "two_point"}
