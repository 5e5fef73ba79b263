"""The modulus minimised (theory.moe.modulus_polish): lower than sampled, a local minimum, 0 where 0 is there."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sims.experiments import reparam_problem as rp
from theory import InputError
from theory.moe import modulus_polish as mp
from theory.moe.identifiability import modulus, split_configurations
from theory.moe.voronoi import voronoi_loss

X = jax.random.uniform(jax.random.key(3), (256, 4), jnp.float64, -1.0, 1.0)
BIN = (10 ** -2.5, 10 ** -2.0)


def _start(structure, delta, frac=0.5):
    frozen, reparam, truth = rp.problem(structure)
    delta = np.atleast_2d(delta)
    cfg = split_configurations(truth, structure=structure, atom=0, delta1=delta,
                               delta2=-frac / (1 - frac) * delta, frac=np.full(len(delta), frac), d=2)
    return frozen, reparam, truth, cfg


def _feasible(structure, truth, cfg, share=(0.05, 0.95), rho=BIN):
    """The set of polish_modulus, checked from its definition (not from the module's constraints)."""
    w = np.exp(np.asarray(cfg["b"]))
    s = w[-2] / (w[-2] + w[-1])
    vl = voronoi_loss(cfg, truth, structure=structure, r=2.0)
    err = np.asarray(vl.param_error)
    mass = np.r_[w[0], w[-2] + w[-1]] / np.exp(np.asarray(truth["b"]))[[1, 0]]
    return (share[0] - 1e-9 <= s <= share[1] + 1e-9 and np.all(err <= rho[1] * (1 + 1e-6))
            and err[0] >= rho[0] * (1 - 1e-6) and np.all(np.abs(np.log(mass)) <= rho[1] * (1 + 1e-6)))


@pytest.mark.slow
def test_polish_lowers_the_modulus_to_a_local_minimum():
    frozen, reparam, truth, cfg = _start("shared_linear", 4e-3 * np.array([[0.6, 0.8]]))
    p = mp.polish_modulus(frozen, truth, cfg, structure="shared_linear", X=X, atom=0, reparam=reparam, rho=BIN)
    assert p.moved[0] and p.ratio[0] < p.start_ratio[0] / 3  # the sampled value was far from the infimum
    best = {k: v[0] for k, v in p.configs.items()}
    assert _feasible("shared_linear", truth, best) and BIN[0] * 0.999 <= p.merged_error[0] <= BIN[1] * 1.001
    # a local minimum: no feasible perturbation lowers it (perturbed in the minimiser's coordinates)
    cell_of, scale = np.array([1, 0, 0]), float(np.sqrt(BIN[0] * BIN[1]))
    b_t, th_t = np.asarray(truth["b"]), np.asarray(truth["p"])
    u = mp._coordinates(best["b"], best["p"], cell_of, b_t, th_t, scale)
    rng = np.random.default_rng(0)
    tried = []
    for _ in range(240):
        b, loc = mp._config(jnp.asarray(u + 1e-3 * rng.normal(size=u.size)), jnp.asarray(cell_of), jnp.asarray(b_t),
                            jnp.asarray(th_t), scale)
        c = {"b": np.asarray(b), "p": np.asarray(loc)}
        if _feasible("shared_linear", truth, c):
            tried.append(c)
    assert len(tried) >= 8
    batch = {k: np.stack([c[k] for c in tried]) for k in ("b", "p")}
    r = np.asarray(modulus(frozen, truth, batch, structure="shared_linear", X=X, reparam=reparam).ratio)
    assert r.min() >= p.ratio[0] * (1 - 1e-6)


@pytest.mark.slow
def test_polish_reaches_zero_on_the_nonshared_structure():
    # negative control: keys 2e-3 apart, values 0.2 apart -- off the equal-key manifold, ratio ~ key separation
    frozen, reparam, truth, cfg = _start("nonshared", [[2e-3, 0.0, 0.1, 0.0]])
    p = mp.polish_modulus(frozen, truth, cfg, structure="nonshared", X=X, atom=0, rho=(0.03, 0.1))
    assert p.start_ratio[0] > 1e-3 and p.ratio[0] < 1e-6 and p.moved[0]


def test_escaping_atom_drives_the_modulus_to_zero_without_a_bounded_set():
    # one atom of a merged pair pushed out to p'* + t u: D grows like t^2, ||f_G - f*|| is bounded (tanh
    # saturates) or grows like t (linear values), so the ratio falls like t^-2 (tanh) or t^-1 (linear)
    t = np.array([8.0, 16.0, 32.0, 64.0])
    slopes = {}
    for s in ("shared_tanh", "shared_linear"):
        frozen, reparam, truth = rp.problem(s)
        cfg = split_configurations(truth, structure=s, atom=0, delta1=np.zeros((len(t), 2)),
                                   delta2=t[:, None] * np.array([[0.6, 0.8]]), frac=np.full(len(t), 0.5), d=2)
        r = np.asarray(modulus(frozen, truth, cfg, structure=s, X=X, reparam=reparam).ratio)
        assert np.all(r > 0) and np.all(np.diff(r) < 0)
        slopes[s] = np.polyfit(np.log(t), np.log(r), 1)[0]
    assert slopes["shared_tanh"] == pytest.approx(-2.0, abs=0.3)
    assert slopes["shared_linear"] == pytest.approx(-1.0, abs=0.3)  # the wrong exponent for tanh is far


def test_rescale_configuration_scales_the_orders():
    _, _, truth, cfg = _start("prompt", [[1e-3, 2e-3]], frac=0.3)
    one = {k: np.asarray(v[0]) for k, v in cfg.items()}
    same = mp.rescale_configuration(one, truth, structure="prompt", atom=0, factor=1.0)
    np.testing.assert_allclose(same["p"], one["p"], rtol=0, atol=1e-14)
    np.testing.assert_allclose(same["b"], one["b"], rtol=0, atol=1e-14)
    ten = mp.rescale_configuration(one, truth, structure="prompt", atom=0, factor=10.0)
    sep = lambda c: c["p"][-2] - c["p"][-1]  # noqa: E731
    np.testing.assert_allclose(sep(ten), 10 * sep(one), rtol=1e-10)
    w = lambda c: np.exp(c["b"][-2:]) / np.exp(c["b"][-2:]).sum()  # noqa: E731
    np.testing.assert_allclose(w(ten), w(one), rtol=1e-12)  # the share is a shape, not a scale
    with pytest.raises(InputError, match="factor"):
        mp.rescale_configuration(one, truth, structure="prompt", atom=0, factor=0.0)


def test_polish_refuses_bad_input():
    frozen, reparam, truth, cfg = _start("prompt", [[1e-3, 0.0]])
    kw = {"structure": "prompt", "X": X}
    with pytest.raises(InputError, match="atom"):
        mp.polish_modulus(frozen, truth, cfg, atom=2, **kw)
    with pytest.raises(InputError, match="rho"):
        mp.polish_modulus(frozen, truth, cfg, atom=0, rho=(0.1, 0.01), **kw)
    with pytest.raises(InputError, match="share"):
        mp.polish_modulus(frozen, truth, cfg, atom=0, share=(0.5, 0.2), **kw)
    with pytest.raises(InputError, match="box"):
        mp.polish_modulus(frozen, truth, cfg, atom=0, box=-1.0, **kw)
    with pytest.raises(InputError, match="L\\* \\+ 1"):
        mp.polish_modulus(frozen, truth, {k: v[:, :2] for k, v in cfg.items()}, atom=0, **kw)
