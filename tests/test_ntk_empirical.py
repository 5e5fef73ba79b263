"""Structured NTK == autodiff NTK, for every model, over inputs drawn by hypothesis."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, strategies as st

import theory as T

MODELS = [("exp-sign", 1), ("softmax-sign", 3), ("prefix", 3)]
N, D, M = 4, 5, 97


def inputs(seed, scale, n=N, d=D):
    rng = np.random.default_rng(seed)
    return scale * rng.normal(size=(n, d)) / np.sqrt(d)


@pytest.mark.parametrize("name, k", MODELS)
@given(seed=st.integers(0, 2**31 - 1), scale=st.floats(0.1, 2.0), sigma=st.floats(0.2, 1.5),
       chunk=st.sampled_from([7, 32, 4096]))
def test_structured_equals_autodiff(name, k, seed, scale, sigma, chunk):
    P, frozen = T.init_model(name, key=jax.random.key(seed), m=M, d=D, k=k, sigma=sigma)
    # Move P off its initial value so the centred prefix model and trained states are covered.
    P = P + 0.3 * jnp.asarray(np.random.default_rng(seed + 1).normal(size=P.shape))
    U1, U2 = inputs(seed, scale), inputs(seed + 2, scale, n=3)
    for a, b in [(U1, None), (U1, U2)]:
        Hs = T.structured_ntk(name, P, frozen, a, b, chunk_size=chunk)
        Ha = T.autodiff_model_ntk(name, P, frozen, a, b)
        assert Hs.shape == Ha.shape == (a.shape[0], (a if b is None else b).shape[0], k, k)
        np.testing.assert_allclose(Hs, Ha, rtol=1e-10, atol=1e-10 * float(jnp.max(jnp.abs(Ha))))


@pytest.mark.parametrize("name, k", MODELS)
def test_float32_path(name, k):
    P, frozen = T.init_model(name, key=jax.random.key(0), m=M, d=D, k=k, dtype=jnp.float32)
    U = inputs(0, 1.0).astype(np.float32)
    Hs = T.structured_ntk(name, P, frozen, U, chunk_size=16)
    assert Hs.dtype == jnp.float32
    P64 = jnp.asarray(P, jnp.float64)
    fr64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), frozen)
    H64 = T.autodiff_model_ntk(name, P64, fr64, U.astype(np.float64))
    np.testing.assert_allclose(Hs, H64, rtol=5e-5, atol=5e-5 * float(jnp.max(jnp.abs(H64))))


def test_full_kernel_not_traced():
    P, frozen = T.init_model("softmax-sign", key=jax.random.key(1), m=50, d=D, k=3)
    H = T.empirical_ntk("softmax-sign", P, frozen, inputs(1, 1.0))
    K = T.kernel_matrix(H)
    assert H.shape == (N, N, 3, 3) and K.shape == (3 * N, 3 * N)
    # Off-diagonal output blocks are present (nonzero at finite m), not averaged away.
    assert float(jnp.max(jnp.abs(H[:, :, 0, 1]))) > 0
    np.testing.assert_allclose(K[1 * 3 + 2, 0 * 3 + 1], H[1, 0, 2, 1])


def test_generic_autodiff_on_pytree_params():
    # The reference works for any function of any parameter pytree.
    params = {"w": jnp.arange(6.0).reshape(2, 3) / 5, "b": jnp.array([0.5, -0.2])}

    def f(p, u):
        return jnp.tanh(p["w"] @ u + p["b"])

    U = inputs(3, 1.0, n=4, d=3)
    H = T.autodiff_ntk(f, params, U)
    J = jax.vmap(jax.jacrev(f), in_axes=(None, 0))(params, jnp.asarray(U))
    flat = jnp.concatenate([J["w"].reshape(4, 2, -1), J["b"].reshape(4, 2, -1)], axis=-1)
    np.testing.assert_allclose(H, jnp.einsum("ikp,jlp->ijkl", flat, flat), rtol=1e-12)


def test_autodiff_refuses_what_does_not_fit():
    P, frozen = T.init_model("exp-sign", key=jax.random.key(0), m=1000, d=D)
    with pytest.raises(MemoryError, match="GiB"):
        T.autodiff_model_ntk("exp-sign", P, frozen, inputs(0, 1.0), memory_budget=1000)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"m": 0}, "m must be an integer >= 1"), ({"m": 1.5}, "m must be an integer"), ({"m": -3}, "m must be"),
     ({"d": 0}, "d must be"), ({"sigma": 0.0}, "sigma must be a positive"), ({"sigma": float("nan")}, "sigma"),
     ({"k": 2}, "k must be 1 for model 'exp-sign'"), ({"dtype": jnp.int32}, "dtype must be float32 or float64")],
)
def test_init_bad_input(kwargs, match):
    args = {"key": jax.random.key(0), "m": 10, "d": 3, "k": 1, "sigma": 1.0, **kwargs}
    with pytest.raises(T.InputError, match=match):
        T.init_model("exp-sign", **args)


def test_init_accepts_integral_float():
    P, _ = T.init_model("exp-sign", key=jax.random.key(0), m=1e2, d=3)
    assert P.shape == (100, 3)


def test_ntk_bad_input():
    P, frozen = T.init_model("exp-sign", key=jax.random.key(0), m=20, d=3)
    U = inputs(0, 1.0, d=3)
    with pytest.raises(T.InputError, match="U1 must have 3 columns"):
        T.structured_ntk("exp-sign", P, frozen, U[:, :2])
    bad = U.copy()
    bad[1, 1] = np.nan
    with pytest.raises(T.InputError, match="U1 contains 1 NaN"):
        T.structured_ntk("exp-sign", P, frozen, bad)
    with pytest.raises(T.LogitOverflowError, match="overflows float64"):
        T.structured_ntk("exp-sign", P * 1e3, frozen, U)
    with pytest.raises(T.InputError, match="model must be one of"):
        T.structured_ntk("nope", P, frozen, U)
    with pytest.raises(T.InputError, match="method must be"):
        T.empirical_ntk("exp-sign", P, frozen, U, method="fast")


def test_float32_overflow_is_refused_where_float64_is_fine():
    P, frozen = T.init_model("exp-sign", key=jax.random.key(0), m=20, d=3, dtype=jnp.float32)
    U = (10 * inputs(0, 1.0, d=3)).astype(np.float32)
    P = P * 10  # logits of a few tens: exp(2 z) overflows float32 (limit 88.7) but not float64
    with pytest.raises(T.LogitOverflowError, match="float32"):
        T.structured_ntk("exp-sign", P, frozen, U)
    H = T.structured_ntk("exp-sign", jnp.asarray(P, jnp.float64), frozen, U.astype(np.float64))
    assert np.all(np.isfinite(H))


def test_lambda_min_reports_asymmetry_and_jitter():
    K = jnp.array([[2.0, 1.0], [0.0, 2.0]])
    res = T.lambda_min(K, jitter=0.1)
    np.testing.assert_allclose(res.value, 1.6, rtol=1e-12)
    assert res.asymmetry > 0 and res.jitter == 0.1
