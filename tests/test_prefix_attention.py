"""Exact prefix attention against the literal formula of spec section 1."""

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, strategies as st

from theory import InputError, prefix_attention, prefix_attention_batch


def naive(X, P, W_Q, W_K, W_V, causal=False):
    Q = X @ W_Q
    K = np.concatenate([P, X]) @ W_K
    V = np.concatenate([P, X]) @ W_V
    A = np.exp(Q @ K.T / np.sqrt(Q.shape[1]))
    if causal:
        L, m = X.shape[0], P.shape[0]
        A[:, m:] *= np.tril(np.ones((L, L)))
    return (A @ V) / A.sum(1, keepdims=True)


def draw(seed, L=5, m=37, d=6, scale=1.0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X, P = rng.normal(size=(L, d)), rng.normal(size=(m, d))
    W = [scale * rng.normal(size=(d, d)) / np.sqrt(d) for _ in range(3)]
    return [a.astype(dtype) for a in (X, P, *W)]


@given(seed=st.integers(0, 2**31 - 1), causal=st.booleans(), chunk=st.sampled_from([None, 1, 5, 16, 64]))
def test_matches_formula(seed, causal, chunk):
    args = draw(seed)
    out = prefix_attention(*args, causal=causal, chunk_size=chunk)
    np.testing.assert_allclose(out, naive(*args, causal=causal), rtol=1e-12, atol=1e-13)


def test_causal_mask_only_on_input_block():
    X, P, *W = draw(1)
    full = prefix_attention(X, P, *W, causal=True)
    # The first query sees the whole prefix and only itself among the inputs.
    np.testing.assert_allclose(full[0], prefix_attention(X[:1], P, *W)[0], rtol=1e-12)
    # Changing a later token leaves earlier outputs unchanged under the mask.
    X2 = X.copy()
    X2[-1] += 1.0
    np.testing.assert_allclose(prefix_attention(X2, P, *W, causal=True)[:-1], full[:-1], rtol=1e-12)


def test_stable_for_large_logits_and_float32():
    X, P, *W = draw(2, scale=40.0)  # logits in the thousands: exp would overflow without max-subtraction
    out = prefix_attention(X, P, *W)
    assert np.all(np.isfinite(out))
    X32, P32, *W32 = (a.astype(np.float32) for a in (X, P, *W))
    out32 = prefix_attention(X32, P32, *W32, chunk_size=8)
    assert out32.dtype == jnp.float32
    # float32: logits ~1e3 in magnitude carry ~1e-4 absolute rounding, so compare loosely.
    args = draw(3, dtype=np.float32)
    np.testing.assert_allclose(prefix_attention(*args, chunk_size=8), naive(*[a.astype(np.float64) for a in args]),
                               rtol=2e-5, atol=2e-6)


def test_batch():
    X, P, *W = draw(4)
    Xb = np.stack([X, X[::-1]])
    out = prefix_attention_batch(Xb, P, *W, causal=True)
    np.testing.assert_allclose(out[1], naive(X[::-1], P, *W, causal=True), rtol=1e-12)


def _nan_in_x(args):
    args[0][0, 0] = np.nan


def _inf_in_p(args):
    args[1][0, 0] = np.inf


def _narrow_p(args):
    args[1] = args[1][:, :3]


def _short_wq(args):
    args[2] = args[2][:3]


@pytest.mark.parametrize(
    "mutate, match",
    [(_narrow_p, "P must have 6 columns"), (_nan_in_x, "X contains 1 NaN"),
     (_inf_in_p, "P contains 1 NaN or infinite"), (_short_wq, "W_Q must have 6 rows")],
)
def test_bad_input(mutate, match):
    args = draw(5)
    mutate(args)
    with pytest.raises(InputError, match=match):
        prefix_attention(*args)


def test_bad_chunk_size():
    with pytest.raises(InputError, match="chunk_size"):
        prefix_attention(*draw(6), chunk_size=0)


def test_fold_inputs_and_logits_refuse_mismatched_inner_dimensions():
    import theory

    X, P = np.ones((3, 4)), np.ones((5, 4))
    W = np.eye(4)
    with pytest.raises(InputError, match="W_Q must have 4 rows"):
        theory.fold_inputs(X, np.ones((3, 2)), np.ones((3, 2)))
    with pytest.raises(InputError, match="W_K must have the shape of W_Q"):
        theory.fold_inputs(X, W, np.ones((4, 3)))
    with pytest.raises(InputError, match="P must have the tokens' width 4"):
        theory.attention_logits(X, np.ones((5, 3)), W, W)
    z_P, z_X = theory.attention_logits(X, P, W, W)  # matching shapes still work
    assert z_P.shape == (3, 5) and z_X.shape == (3, 3)
