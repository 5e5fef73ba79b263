"""theory.moe.voronoi: Voronoi losses between fitted and true mixing measures (spec 5)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from theory.validation import InputError
from theory.moe.voronoi import Atoms, atoms, voronoi_loss, voronoi_loss_atoms


def _random(seed, structure, L, d=2):
    ks = jax.random.split(jax.random.PRNGKey(seed), 3)
    b = 0.3 * jax.random.normal(ks[0], (L,))
    if structure == "nonshared":
        return {"b": b, "pK": jax.random.normal(ks[1], (L, d)), "pV": jax.random.normal(ks[2], (L, d))}
    return {"b": b, "p": jax.random.normal(ks[1], (L, d))}


@pytest.mark.parametrize("structure", ["nonshared", "shared_linear", "shared_tanh", "prompt"])
def test_zero_at_truth(structure):
    true = _random(0, structure, 3)
    v = voronoi_loss(true, true, structure=structure, r=2.0)
    assert float(v.total) == 0.0
    np.testing.assert_array_equal(v.cell_size, [1, 1, 1])
    np.testing.assert_array_equal(v.param_error, [0, 0, 0])


@given(seed=st.integers(0, 10_000), perm=st.permutations(range(4)), structure=st.sampled_from(["nonshared", "prompt"]))
def test_symmetric_under_atom_permutation(seed, perm, structure):
    true = _random(seed, structure, 3)
    fitted = _random(seed + 1, structure, 4)
    perm = np.asarray(perm)
    permuted = {k: v[perm] for k, v in fitted.items()}
    a = voronoi_loss(fitted, true, structure=structure, r=1.5)
    b = voronoi_loss(permuted, true, structure=structure, r=1.5)
    np.testing.assert_allclose(a.total, b.total, rtol=1e-12)
    np.testing.assert_allclose(a.location_error, b.location_error, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(a.cell_size, b.cell_size)
    np.testing.assert_array_equal(np.asarray(a.assignment)[perm], b.assignment)
    # Relabelling the true atoms permutes the per-cell errors and keeps the total.
    tperm = np.array([2, 0, 1])
    c = voronoi_loss(fitted, {k: v[tperm] for k, v in true.items()}, structure=structure, r=1.5)
    np.testing.assert_allclose(c.total, a.total, rtol=1e-12)
    np.testing.assert_allclose(c.location_error, np.asarray(a.location_error)[tperm], rtol=1e-12, atol=1e-15)


def test_shared_hand_computed():
    # True atoms (0,0) and (10,0), weights 1.  Fitted: (0.1,0) w .5 and (-0.2,0) w .4 share cell 0
    # (merged, power 2); (10, 0.3) w 1.2 is alone in cell 1 (power 1).
    true = {"b": jnp.zeros(2), "p": jnp.array([[0.0, 0.0], [10.0, 0.0]])}
    fitted = {"b": jnp.log(jnp.array([0.5, 0.4, 1.2])), "p": jnp.array([[0.1, 0.0], [-0.2, 0.0], [10.0, 0.3]])}
    v = voronoi_loss(fitted, true, structure="shared_linear")
    np.testing.assert_allclose(v.weight_error, [0.1, 0.2], rtol=1e-12)
    np.testing.assert_allclose(v.location_error, [0.5 * 0.01 + 0.4 * 0.04, 1.2 * 0.3], rtol=1e-12)
    np.testing.assert_allclose(v.total, 0.1 + 0.2 + 0.021 + 0.36, rtol=1e-12)
    np.testing.assert_array_equal(v.cell_size, [2, 1])
    np.testing.assert_array_equal(v.assignment, [0, 0, 1])
    np.testing.assert_allclose(v.param_error, [np.sqrt(0.021 / 0.9), 0.3], rtol=1e-12)


def test_nonshared_hand_computed():
    # Power r = 2 on the key part and on the value part separately; an empty cell has weight
    # error exp(b*) and NaN parameter error.
    true = {"b": jnp.zeros(2), "pK": jnp.array([[0.0], [5.0]]), "pV": jnp.array([[1.0], [5.0]])}
    fitted = {"b": jnp.log(jnp.array([0.6, 0.5])), "pK": jnp.array([[0.3], [-0.1]]), "pV": jnp.array([[0.6], [1.2]])}
    v = voronoi_loss(fitted, true, structure="nonshared", r=2.0)
    loc = 0.6 * (0.09 + 0.16) + 0.5 * (0.01 + 0.04)
    np.testing.assert_allclose(v.location_error, [loc, 0.0], rtol=1e-12)
    np.testing.assert_allclose(v.weight_error, [0.1, 1.0], rtol=1e-12)
    np.testing.assert_allclose(v.total, loc + 1.1, rtol=1e-12)
    np.testing.assert_array_equal(v.cell_size, [2, 0])
    assert np.isnan(v.param_error[1])
    # r = 1: norms of each part, not of the joint location.
    v1 = voronoi_loss(fitted, true, structure="nonshared", r=1.0)
    np.testing.assert_allclose(v1.location_error[0], 0.6 * (0.3 + 0.4) + 0.5 * (0.1 + 0.2), rtol=1e-12)


def test_atoms_and_low_level():
    p = {"b": jnp.log(jnp.array([2.0])), "pK": jnp.ones((1, 2)), "pV": jnp.zeros((1, 3))}
    a, parts = atoms(p, structure="nonshared")
    assert parts == (2, 3) and a.locations.shape == (1, 5)
    np.testing.assert_allclose(a.weights, [2.0])
    v = voronoi_loss_atoms(Atoms(jnp.array([1.0]), jnp.array([[0.5]])), Atoms(jnp.array([1.0]), jnp.array([[0.0]])),
                           parts=(1,), shared=True)
    np.testing.assert_allclose(v.total, 0.5)


def test_bad_inputs_name_the_argument():
    true = _random(0, "prompt", 2)
    with pytest.raises(InputError, match="structure"):
        voronoi_loss(true, true, structure="tied")
    with pytest.raises(InputError, match="fitted"):
        voronoi_loss({"b": true["b"]}, true, structure="prompt")
    with pytest.raises(InputError, match="fitted"):
        voronoi_loss({"b": true["b"], "p": jnp.zeros((2, 3))}, true, structure="prompt")
    with pytest.raises(InputError, match=r"true\['b'\]"):
        voronoi_loss(true, {"b": jnp.zeros(()), "p": true["p"]}, structure="prompt")
    with pytest.raises(InputError, match="r must"):
        voronoi_loss(true, true, structure="prompt", r=0.5)
    with pytest.raises(InputError, match="fitted"):
        voronoi_loss({"b": true["b"], "p": true["p"].at[0, 0].set(jnp.nan)}, true, structure="prompt")
    with pytest.raises(InputError, match="parts"):
        voronoi_loss_atoms(Atoms(jnp.ones(1), jnp.ones((1, 2))), Atoms(jnp.ones(1), jnp.ones((1, 2))),
                           parts=(1,), shared=False)
    with pytest.raises(InputError, match="weights"):
        voronoi_loss_atoms(Atoms(-jnp.ones(1), jnp.ones((1, 2))), Atoms(jnp.ones(1), jnp.ones((1, 2))),
                           parts=(2,), shared=True)
