"""NTK-Attention (spec section 4): feature maps, exact summaries, the forward pass, training."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from theory.ntk_attn.feature_maps import (
    elu_features,
    exp_kernel,
    feature_dim,
    feature_kernel,
    feature_map,
    taylor_features,
    taylor_kernel,
)
from theory.ntk_attn.ntk_attention import ExactSummary, Summary, ntk_attention, ntk_attention_batch, prefix_summary
from theory.ntk_attn.train import (
    init_summary_params,
    params_from_summary,
    summary_from_params,
    train_summary,
    validation_mse,
)
from theory.prefix_attention import prefix_attention
from theory.validation import InputError


def draw(seed, L=5, m=11, d=4, d_v=None, scale=1.0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    d_v = d if d_v is None else d_v
    X, P = rng.normal(size=(L, d)), rng.normal(size=(m, d))
    W_Q, W_K = (scale * rng.normal(size=(d, d)) / np.sqrt(d) for _ in range(2))
    W_V = rng.normal(size=(d, d_v)) / np.sqrt(d)
    return [jnp.asarray(a, dtype) for a in (X, P, W_Q, W_K, W_V)]


def naive_taylor_attention(X, P, W_Q, W_K, W_V, g, causal=False):
    """The literal formula with the closed-form kernel T_g(z) per (query, prefix row) pair."""
    X, P, W_Q, W_K, W_V = (np.asarray(a, np.float64) for a in (X, P, W_Q, W_K, W_V))
    Q, d = X @ W_Q, W_Q.shape[1]
    z_P, z_X = Q @ (P @ W_K).T / np.sqrt(d), Q @ (X @ W_K).T / np.sqrt(d)
    w_P = sum(z_P**j / math.factorial(j) for j in range(g + 1))
    a_X = np.exp(z_X)
    if causal:
        a_X = a_X * np.tril(np.ones_like(a_X))
    num = a_X @ (X @ W_V) + w_P @ (P @ W_V)
    return num / (a_X.sum(1) + w_P.sum(1))[:, None]


# --- feature maps -----------------------------------------------------------------------------


@given(d=st.integers(1, 5), g=st.integers(0, 5), seed=st.integers(0, 2**31 - 1))
@settings(max_examples=8)
def test_taylor_identity(d, g, seed):
    rng = np.random.default_rng(seed)
    q, k = rng.normal(size=(3, d)), rng.normal(size=(4, d))
    phi_q, phi_k = taylor_features(q, g=g), taylor_features(k, g=g)
    assert phi_q.shape == (3, math.comb(d + g, g)) == (3, feature_dim(d, feature="taylor", g=g))
    z = q @ k.T / np.sqrt(d)
    formula = sum(z**j / math.factorial(j) for j in range(g + 1))
    np.testing.assert_allclose(phi_q @ phi_k.T, formula, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(taylor_kernel(q, k, g=g), formula, rtol=1e-12, atol=1e-12)
    if g:  # degree-ordered: the lower-degree map is a prefix of the columns
        np.testing.assert_array_equal(phi_q[:, : math.comb(d + g - 1, g - 1)], taylor_features(q, g=g - 1))


def test_taylor_converges_to_exp_and_elu_formula():
    rng = np.random.default_rng(0)
    q, k = rng.normal(size=(3, 3)), rng.normal(size=(3, 3))
    q, k = q / np.linalg.norm(q, axis=1, keepdims=True), k / np.linalg.norm(k, axis=1, keepdims=True)
    # |z| <= 1/sqrt(3): the degree-14 remainder is below 0.58^15/15! ~ 2e-16
    np.testing.assert_allclose(feature_kernel(q, k, feature="taylor", g=14), exp_kernel(q, k), rtol=1e-13)
    np.testing.assert_allclose(feature_kernel(q, k, feature="exact"), np.exp(q @ k.T / np.sqrt(3)))
    x = rng.normal(size=(7, 16))
    y = x / 16**0.25
    np.testing.assert_allclose(elu_features(x), np.where(y > 0, y, np.expm1(y)) + 1, rtol=1e-14)
    assert np.all(np.asarray(feature_map(x, feature="elu")) > 0)
    assert feature_dim(16, feature="elu") == 16 and feature_dim(16, feature="exact") is None


# --- exact summaries and the forward pass ----------------------------------------------------


@given(seed=st.integers(0, 2**31 - 1), causal=st.booleans(), scale=st.sampled_from([0.3, 1.0, 4.0]))
@settings(max_examples=15)
def test_exact_kernel_equals_prefix_attention(seed, causal, scale):
    X, P, *W = draw(seed, scale=scale)
    out = ntk_attention(X, prefix_summary(P, W[1], W[2], feature="exact"), *W, feature="exact", causal=causal)
    np.testing.assert_allclose(out, prefix_attention(X, P, *W, causal=causal), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("feature,g", [("taylor", 3), ("elu", None)])
@pytest.mark.parametrize("chunk", [1, 4, 64])
def test_streamed_summary_equals_dense(feature, g, chunk):
    X, P, W_Q, W_K, W_V = draw(1)
    phi = feature_map(P @ W_K, feature=feature, g=g)
    Z, k = prefix_summary(P, W_K, W_V, feature=feature, g=g, chunk_size=chunk)
    np.testing.assert_allclose(Z, phi.T @ (P @ W_V), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(k, phi.sum(0), rtol=1e-12)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("g", [1, 4])
def test_taylor_forward_matches_literal_formula(g, causal):
    X, P, *W = draw(2, scale=0.7)
    S = prefix_summary(P, W[1], W[2], feature="taylor", g=g)
    out = ntk_attention(X, S, *W, feature="taylor", g=g, causal=causal)
    np.testing.assert_allclose(out, naive_taylor_attention(X, P, *W, g, causal), rtol=1e-11, atol=1e-12)
    batch = ntk_attention_batch(jnp.stack([X, 2 * X]), S, *W, feature="taylor", g=g, causal=causal)
    np.testing.assert_allclose(batch[0], out, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("feature,g", [("taylor", 2), ("elu", None), ("exact", None)])
def test_causal_mask_only_on_input_block(feature, g):
    X, P, *W = draw(3)
    S = prefix_summary(P, W[1], W[2], feature=feature, g=g)
    out = ntk_attention(X, S, *W, feature=feature, g=g, causal=True)
    X2 = X.at[3:].set(5.0)  # change the later tokens: rows 0..2 must not move
    out2 = ntk_attention(X2, S, *W, feature=feature, g=g, causal=True)
    np.testing.assert_allclose(out[:3], out2[:3], rtol=1e-13)
    assert not np.allclose(out[3:], out2[3:])
    # The first query sees the full prefix summary and only itself among the inputs.
    first = ntk_attention(X[:1], S, *W, feature=feature, g=g, causal=False)
    np.testing.assert_allclose(out[:1], first, rtol=1e-13)


def test_stable_for_extreme_input_logits():
    X, P, *W = draw(4)
    big, small = 40.0 * X, P / 40.0  # prefix logits unchanged, input logits x 1600 (e^z overflows)
    ref = prefix_attention(big, small, *W, causal=True)
    Q = big @ W[0]
    z_X = np.tril(Q @ (big @ W[1]).T / 2.0) + np.triu(np.full((5, 5), -np.inf), 1)
    mx = z_X.max(1)
    assert mx.max() > 710 and mx.min() < -30  # rows dominated by the input block, and by the prefix
    out = ntk_attention(big, prefix_summary(small, W[1], W[2], feature="exact"), *W, feature="exact", causal=True)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    for feature, g in (("taylor", 2), ("elu", None)):
        S = prefix_summary(small, W[1], W[2], feature=feature, g=g)
        out = ntk_attention(big, S, *W, feature=feature, g=g, causal=True)
        assert np.all(np.isfinite(out))
        hi, lo = mx > 30, mx < -30
        np.testing.assert_allclose(out[hi], ref[hi], rtol=1e-9, atol=1e-9)  # prefix share < e^-30
        phi = feature_map(Q[lo], feature=feature, g=g)  # input share < e^-30: the pure prefix ratio
        np.testing.assert_allclose(out[lo], (phi @ S.Z) / (phi @ S.k)[:, None], rtol=1e-9, atol=1e-9)


def test_float32_path():
    X, P, *W = (a.astype(jnp.float32) for a in draw(5, scale=0.5))
    ref64 = prefix_attention(*(a.astype(jnp.float64) for a in (X, P, *W)))
    S = prefix_summary(P, W[1], W[2], feature="exact")
    out = ntk_attention(X, S, *W, feature="exact")
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, ref64, rtol=2e-5, atol=2e-6)
    St = prefix_summary(P, W[1], W[2], feature="taylor", g=6, chunk_size=7)
    out_t = ntk_attention(X, St, *W, feature="taylor", g=6)
    assert St.Z.dtype == out_t.dtype == jnp.float32
    exact64 = naive_taylor_attention(X, P, *W, 6)
    np.testing.assert_allclose(out_t, exact64, rtol=1e-4, atol=2e-5)


# --- bad inputs ------------------------------------------------------------------------------


def test_bad_inputs_name_the_argument():
    X, P, W_Q, W_K, W_V = draw(6)
    S = prefix_summary(P, W_K, W_V, feature="taylor", g=2)
    cases = [
        (lambda: prefix_summary(P, W_K, W_V, feature="cosine"), "feature"),
        (lambda: prefix_summary(P, W_K, W_V, feature="taylor"), "g"),
        (lambda: prefix_summary(P, W_K, W_V, feature="taylor", g=-1), "g"),
        (lambda: prefix_summary(P[0], W_K, W_V, feature="elu"), "P"),
        (lambda: prefix_summary(P, W_K[:2], W_V, feature="elu"), "W_K"),
        (lambda: prefix_summary(P.at[0, 0].set(np.nan), W_K, W_V, feature="elu"), "P"),
        (lambda: prefix_summary(P, W_K, W_V, feature="elu", chunk_size=0), "chunk_size"),
        (lambda: ntk_attention(X, S, W_Q, W_K, W_V, feature="taylor", g=3), "summary.Z"),
        (lambda: ntk_attention(X, Summary(S.Z, S.k[:-1]), W_Q, W_K, W_V, feature="taylor", g=2), "summary.k"),
        (lambda: ntk_attention(X, S, W_Q, W_K, W_V, feature="exact"), "summary"),
        (lambda: ntk_attention(X[:, :2], S, W_Q, W_K, W_V, feature="taylor", g=2), "W_Q"),
        (lambda: ntk_attention(X.at[1, 1].set(np.inf), S, W_Q, W_K, W_V, feature="taylor", g=2), "X"),
        (lambda: ntk_attention(X, S, W_Q, W_K[:, :2], W_V, feature="taylor", g=2), "W_K"),
        (lambda: ntk_attention_batch(X, S, W_Q, W_K, W_V, feature="taylor", g=2), "X"),
        (lambda: feature_map(X, feature="exact"), "exact"),
        (lambda: taylor_features(X, g=1.5), "g"),
        (lambda: train_summary(P, W_Q, W_K, W_V, key=jax.random.key(0), feature="exact", L=3, steps=2), "feature"),
        (lambda: train_summary(P, W_Q, W_K, W_V, key=jax.random.key(0), feature="elu", L=3, steps=0), "steps"),
        (lambda: train_summary(P, W_Q, W_K, W_V, key=jax.random.key(0), feature="elu", L=3, steps=2,
                               init={"Z": S.Z, "k": S.k}), "init"),
        (lambda: init_summary_params(key=jax.random.key(0), r=0, d_v=2), "r"),
    ]
    for call, name in cases:
        with pytest.raises(InputError, match=name):
            call()


# --- trained summaries -------------------------------------------------------------------------


def test_training_lowers_the_error_and_is_deterministic():
    X, P, *W = draw(7)
    key = jax.random.key(1)
    init = init_summary_params(key=key, r=4, d_v=4, init_std=1.0, dtype=jnp.float64)
    kw = dict(feature="elu", L=5, steps=150, lr=3e-2, init=init)
    params, losses = train_summary(P, *W, key=key, **kw)
    assert losses.shape == (150,) and np.all(np.isfinite(losses))
    # every step draws a fresh X and records its loss before the update: held-out estimates
    assert np.mean(losses[-30:]) < 0.5 * np.mean(losses[:10])
    again, losses2 = train_summary(P, *W, key=key, **kw)
    np.testing.assert_array_equal(losses, losses2)
    np.testing.assert_array_equal(params["Z"], again["Z"])


def test_training_from_exact_summary_low_rank_and_validation():
    X, P, *W = draw(8, scale=0.5)
    S = prefix_summary(P, W[1], W[2], feature="taylor", g=2)
    kw = dict(feature="taylor", g=2, L=5)
    exact_err, power = validation_mse(S, P, *W, key=jax.random.key(3), n_val=32, **kw)
    assert exact_err < 1e-2 * power  # small logits: the degree-2 summary is accurate
    r = feature_dim(4, feature="taylor", g=2)
    low = init_summary_params(key=jax.random.key(5), r=r, d_v=4, rank=2)
    assert low["Z_A"].shape == (r, 2) and low["Z_B"].shape == (2, 4) and low["k"].shape == (r,)
    # low rank, started at the exact summary (Z_A = Z, Z_B = I / scale: rank d_v), training stays there
    init = {"Z_A": S.Z, "Z_B": jnp.eye(4) / 16.0, "k": S.k / 16.0}
    params, losses = train_summary(P, *W, key=jax.random.key(5), steps=30, scale=16.0, lr=1e-6, init=init, **kw)
    assert params["Z_A"].shape == (r, 4) and params["Z_B"].shape == (4, 4)
    np.testing.assert_allclose(16.0 * summary_from_params(params).Z, S.Z, rtol=1e-2, atol=5e-2)
    assert np.all(np.isfinite(losses)) and float(jnp.max(losses)) < 10 * exact_err
    np.testing.assert_allclose(params_from_summary(S)["Z"], S.Z)
    ex = validation_mse(ExactSummary(P @ W[1], P @ W[2]), P, *W, key=jax.random.key(3), n_val=8,
                        feature="exact", L=5)[0]
    assert ex < 1e-25


@pytest.mark.slow
def test_summary_of_ten_million_rows_fits():
    m, d = 10**7, 2
    P = jax.random.normal(jax.random.key(0), (m, d))
    W = jnp.eye(d) / 4
    Z, k = prefix_summary(P, W, W, feature="taylor", g=2, chunk_size=1 << 16)
    assert np.all(np.isfinite(Z)) and float(k[0]) == pytest.approx(m)
