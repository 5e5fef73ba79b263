"""theory.moe.model: one prefix-attention row is the softmax-gated MoE f_G (spec 5, docs/reparam_model.md)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from theory.moe.model import (
    STRUCTURES,
    Reparam,
    moe_features,
    moe_from_attention,
    moe_regression,
    prompt_keys_values,
    stack_tokens,
)
from theory.prefix_attention import prefix_attention
from theory.validation import InputError


def _setup(seed, d=3, N=4, d_k=2, d_v=5, dp=2, L=2):
    ks = jax.random.split(jax.random.PRNGKey(seed), 9)
    n = jax.random.normal
    return dict(
        W_Q=n(ks[0], (d, d_k)), W_K=n(ks[1], (d, d_k)), W_V=n(ks[2], (d, d_v)), X=n(ks[3], (N, d)),
        reparam=Reparam(n(ks[4], (d, dp)), n(ks[5], (d, dp))),
        params={
            "nonshared": {"pK": n(ks[6], (L, d)), "pV": n(ks[7], (L, d))},
            "shared_linear": {"p": n(ks[8], (L, dp))},
            "shared_tanh": {"p": n(ks[8], (L, dp))},
            "prompt": {"p": n(ks[6], (L, d))},
        },
    )


def _attention_with_prefix(X, K, V, mult, W_Q, W_K, W_V):
    """Row-wise prefix attention with separate prefix keys/values, via theory.prefix_attention.

    prefix_attention ties keys and values to one prefix P; lifting to 2d coordinates
    (X~ = [X, X], P~ = [p^K, p^V], W~_Q = [W_Q; 0], W~_K = [W_K; 0], W~_V = [0; W_V]) gives
    P~ W~_K = p^K W_K, P~ W~_V = p^V W_V and leaves the input block unchanged.  Prefix row j is
    repeated mult[j] times, which is the bias b_j = log mult[j].
    """
    d = X.shape[1]
    Z = lambda r, c: jnp.zeros((r, c))  # noqa: E731
    Xe = jnp.concatenate([X, X], 1)
    Pe = jnp.repeat(jnp.concatenate([K, V], 1), np.asarray(mult), axis=0)
    WQe = jnp.concatenate([W_Q, Z(d, W_Q.shape[1])], 0)
    WKe = jnp.concatenate([W_K, Z(d, W_K.shape[1])], 0)
    WVe = jnp.concatenate([Z(d, W_V.shape[1]), W_V], 0)
    return prefix_attention(Xe, Pe, WQe, WKe, WVe)


@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize("seed", [0, 1])
def test_moe_equals_attention_row(structure, seed):
    s = _setup(seed)
    mult = np.array([1, 3])
    params = {**s["params"][structure], "b": jnp.log(jnp.asarray(mult, jnp.float64))}
    _, K, V = prompt_keys_values(structure, params, s["reparam"])
    att = _attention_with_prefix(s["X"], K, V, mult, s["W_Q"], s["W_K"], s["W_V"])
    X = stack_tokens(s["X"])[None]
    for q in range(s["X"].shape[0]):
        frozen = moe_from_attention(s["W_Q"], s["W_K"], s["W_V"], n_tokens=s["X"].shape[0], query=q)
        f = moe_regression(X, frozen, params, structure=structure, reparam=s["reparam"])
        np.testing.assert_allclose(f[0], att[q], rtol=1e-12, atol=1e-12)


def test_prompt_is_tied_prefix_of_spec_section_1():
    # p^K = p^V = P with zero biases is exactly PrefixAttn(X, P) of spec section 1.
    s = _setup(3)
    P = s["params"]["prompt"]["p"]
    att = prefix_attention(s["X"], P, s["W_Q"], s["W_K"], s["W_V"])
    frozen = moe_from_attention(s["W_Q"], s["W_K"], s["W_V"], n_tokens=4, query=2)
    f = moe_regression(stack_tokens(s["X"])[None], frozen, {"b": jnp.zeros(2), "p": P}, structure="prompt")
    np.testing.assert_allclose(f[0], att[2], rtol=1e-12, atol=1e-12)


def test_fixed_matrices_reproduce_logits():
    s = _setup(4)
    frozen = moe_from_attention(s["W_Q"], s["W_K"], s["W_V"], n_tokens=4, query=1)
    X = stack_tokens(s["X"])
    M = s["W_Q"] @ s["W_K"].T / jnp.sqrt(2.0)
    for j in range(4):
        np.testing.assert_allclose(X @ frozen.A[j] @ X, s["X"][1] @ M @ s["X"][j], rtol=1e-12)
        np.testing.assert_allclose(frozen.H[j] @ X, s["W_V"].T @ s["X"][j], rtol=1e-12)
    p = s["params"]["prompt"]["p"][0]
    np.testing.assert_allclose((frozen.B @ p) @ X, s["X"][1] @ M @ p, rtol=1e-12)
    np.testing.assert_allclose(frozen.C, s["W_V"].T)
    feats = moe_features(X[None], frozen)
    assert feats.s0.shape == (1,) and feats.m0.shape == (1, 5) and feats.U.shape == (1, 3)


def test_stable_at_large_logits():
    s = _setup(5)
    frozen = moe_from_attention(50 * s["W_Q"], 50 * s["W_K"], s["W_V"], n_tokens=4)
    f = moe_regression(stack_tokens(s["X"])[None], frozen, {"b": jnp.zeros(2), "p": 30 * s["params"]["prompt"]["p"]},
                       structure="prompt")
    assert np.all(np.isfinite(f))


def test_bad_inputs_name_the_argument():
    s = _setup(0)
    W_Q, W_K, W_V = s["W_Q"], s["W_K"], s["W_V"]
    with pytest.raises(InputError, match="W_K"):
        moe_from_attention(W_Q, W_K[:, :1], W_V, n_tokens=2)
    with pytest.raises(InputError, match="W_V"):
        moe_from_attention(W_Q, W_K, W_V[:2], n_tokens=2)
    with pytest.raises(InputError, match="query"):
        moe_from_attention(W_Q, W_K, W_V, n_tokens=2, query=2)
    with pytest.raises(InputError, match="n_tokens"):
        moe_from_attention(W_Q, W_K, W_V, n_tokens=0)
    with pytest.raises(InputError, match="W_Q"):
        moe_from_attention(W_Q.at[0, 0].set(jnp.nan), W_K, W_V, n_tokens=2)
    with pytest.raises(InputError, match="c"):
        moe_from_attention(W_Q, W_K, W_V, n_tokens=2, c=jnp.zeros(3))
    frozen = moe_from_attention(W_Q, W_K, W_V, n_tokens=4)
    X = stack_tokens(s["X"])[None]
    good = {"b": jnp.zeros(2), "p": s["params"]["shared_linear"]["p"]}
    with pytest.raises(InputError, match="X"):
        moe_regression(X[:, :5], frozen, good, structure="shared_linear", reparam=s["reparam"])
    with pytest.raises(InputError, match="structure"):
        moe_regression(X, frozen, good, structure="shared", reparam=s["reparam"])
    with pytest.raises(InputError, match="reparam"):
        moe_regression(X, frozen, good, structure="shared_linear")
    with pytest.raises(InputError, match="keys"):
        moe_regression(X, frozen, {"b": jnp.zeros(2)}, structure="nonshared")
    with pytest.raises(InputError, match=r"params\['p'\]"):
        moe_regression(X, frozen, {"b": jnp.zeros(2), "p": jnp.zeros((2, 5))}, structure="prompt")
    with pytest.raises(InputError, match=r"params\['b'\]"):
        moe_regression(X, frozen, {"b": jnp.zeros((2, 1)), "p": jnp.zeros((2, 3))}, structure="prompt")
    with pytest.raises(InputError, match="params"):
        moe_regression(X, frozen, {"b": jnp.array([0.0, jnp.inf]), "p": jnp.zeros((2, 3))}, structure="prompt")
