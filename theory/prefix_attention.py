"""Exact prefix attention (spec section 1, paper 1 and its public reference code).

Input ``X`` (L x d), frozen ``W_Q, W_K, W_V`` (d x d_k, d x d_k, d x d_v), trainable prefix
``P`` (m x d) living in embedding space::

    Q = X W_Q,   K = [P; X] W_K,   V = [P; X] W_V
    PrefixAttn(X, P) = diag(A 1)^{-1} A V,    A = exp(Q K^T / sqrt(d_k))

Queries come from ``X`` only.  The optional causal mask applies to the input-token block only:
query ``i`` sees every prefix row and input tokens ``j <= i``.

Numerics: the row maximum of the logits is subtracted before exponentiating, so no finite logit
overflows in float32 or float64.  ``chunk_size`` streams the prefix rows with an online
softmax (running maximum and running sums, as in flash attention), so memory is
O(L (L + chunk_size)) rather than O(L m) and m = 10^7 fits.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from theory import validation as _v
from theory.streaming import merge_softmax_stats, online_softmax

__all__ = [
    "prefix_attention",
    "prefix_attention_batch",
    "attention_logits",
    "input_block",
    "check_attention_args",
]


@_v.validate_args(X=2, P=2, W_Q=2, W_K=2)
def attention_logits(X, P, W_Q, W_K):
    """Prefix and input-block logits ``(Q K_P^T, Q K_X^T) / sqrt(d_k)`` (no causal mask).

    Args:
        X: input tokens, (L, d).
        P: prefix rows, (m, d).
        W_Q: query projection, (d, d_k).
        W_K: key projection, (d, d_k).

    Returns:
        ``(z_P, z_X)``: prefix logits (L, m) and input-block logits (L, L).

    Raises:
        InputError: an argument is not a numeric 2-D array, ``P`` has not the tokens' width d,
            or a projection has not d rows (``W_K`` must be shaped like ``W_Q``).
    """
    X, P = jnp.asarray(X), jnp.asarray(P)
    if P.shape[1] != X.shape[1]:
        raise _v.InputError(f"P must have the tokens' width {X.shape[1]} (columns of X), got {P.shape}")
    _v.check_projections(X.shape[1], W_Q=W_Q, W_K=W_K)
    Q = X @ W_Q
    scale = 1.0 / jnp.sqrt(jnp.asarray(Q.shape[-1], Q.dtype))
    return (Q @ (P @ W_K).T) * scale, (Q @ (X @ W_K).T) * scale


def input_block(X, W_Q, W_K, W_V, causal):
    """``(Q, 1/sqrt(d_k), z_X, V_X)``: queries, logit scale, input-block logits (causal-masked with -inf) and values."""
    Q = X @ W_Q
    scale = 1.0 / jnp.sqrt(jnp.asarray(Q.shape[-1], Q.dtype))
    z_X = (Q @ (X @ W_K).T) * scale
    if causal:
        L = X.shape[0]
        z_X = jnp.where(jnp.tril(jnp.ones((L, L), bool)), z_X, -jnp.inf)
    return Q, scale, z_X, X @ W_V


@functools.partial(jax.jit, static_argnames=("causal", "chunk_size"))
def prefix_attention_jit(X, P, W_Q, W_K, W_V, causal, chunk_size):
    """Unvalidated jitted kernel behind :func:`prefix_attention` (``causal``, ``chunk_size`` static)."""
    Q, scale, z_X, V_X = input_block(X, W_Q, W_K, W_V, causal)
    m = P.shape[0]
    if chunk_size is None or chunk_size >= m:
        z = jnp.concatenate([(Q @ (P @ W_K).T) * scale, z_X], axis=1)
        V = jnp.concatenate([P @ W_V, V_X], axis=0)
        w = jax.nn.softmax(z, axis=1)
        return w @ V

    # Online softmax over prefix chunks, then merge with the exact input block.
    mx_P, s_P, o_P = online_softmax(
        lambda P_c: ((P_c @ W_K) @ Q.T) * scale, lambda P_c: P_c @ W_V, (P,), chunk_size
    )
    mx_X = jnp.max(z_X, axis=1)
    e_X = jnp.exp(z_X - mx_X[:, None])
    _, s, o = merge_softmax_stats((mx_P, s_P, o_P), (mx_X, jnp.sum(e_X, axis=1), e_X @ V_X))
    return o / s[:, None]


def check_attention_args(X, P, W_Q, W_K, W_V, chunk_size):
    """Shape, finiteness and chunk-size checks of :func:`prefix_attention` (raises InputError)."""
    _v.check_matrix("X", X)
    if np.ndim(W_Q) == 2 and np.ndim(P) == 2 and X.shape[1] != np.shape(W_Q)[0] == np.shape(P)[1]:
        raise _v.InputError(f"X must have {np.shape(W_Q)[0]} columns (the rows of W_Q and the columns of P), "
                            f"got shape {X.shape}")
    _v.check_matrix("P", P, cols=X.shape[1])
    _v.check_projections(X.shape[1], W_Q=W_Q, W_K=W_K, W_V=W_V)
    _v.check_finite("X", X)
    _v.check_finite("P", P)
    if chunk_size is not None:
        _v.check_count("chunk_size", chunk_size)


@_v.validate_args(X=2, P=2, W_Q=2, W_K=2, W_V=2)
def prefix_attention(X, P, W_Q, W_K, W_V, *, causal: bool = False, chunk_size: int | None = None):
    """Exact prefix attention ``diag(A 1)^{-1} A V`` for one sequence.

    The computation runs in the dtype of the inputs (float32 or float64).

    Args:
        X: input tokens, (L, d).
        P: prefix rows, (m, d).
        W_Q: query projection, (d, d_k).
        W_K: key projection, (d, d_k).
        W_V: value projection, (d, d_v).
        causal: mask the input-token block (query i sees every prefix row and tokens j <= i).
        chunk_size: stream the prefix in chunks of that many rows (same result, bounded
            memory); ``None`` computes it in one block.

    Returns:
        The attention output, (L, d_v).

    Raises:
        InputError: an array is not numeric 2-D, ``P`` has not d columns, a projection has the
            wrong shape (``W_K`` unlike ``W_Q``, not d rows), ``X``, ``P`` or a projection holds
            NaN/inf, or ``chunk_size`` is not an integer >= 1.
    """
    X, P, W_Q, W_K, W_V = (jnp.asarray(a) for a in (X, P, W_Q, W_K, W_V))
    check_attention_args(X, P, W_Q, W_K, W_V, chunk_size)
    chunk = None if chunk_size is None else int(chunk_size)
    return prefix_attention_jit(X, P, W_Q, W_K, W_V, bool(causal), chunk)


@_v.validate_args(X=3, P=2, W_Q=2, W_K=2, W_V=2)
def prefix_attention_batch(X, P, W_Q, W_K, W_V, *, causal: bool = False, chunk_size: int | None = None):
    """:func:`prefix_attention` over a batch of sequences (shared prefix and projections).

    Args:
        X: input tokens, (B, L, d).
        P: prefix rows, (m, d).
        W_Q: query projection, (d, d_k).
        W_K: key projection, (d, d_k).
        W_V: value projection, (d, d_v).
        causal: as in :func:`prefix_attention`.
        chunk_size: as in :func:`prefix_attention`.

    Returns:
        The attention outputs, (B, L, d_v).

    Raises:
        InputError: ``X`` is not 3-D, or any check of :func:`prefix_attention` fails.
    """
    X = jnp.asarray(X)
    if X.ndim != 3:
        raise _v.InputError(f"X must be a 3-D array (batch, tokens, features), got shape {X.shape}")
    P, W_Q, W_K, W_V = (jnp.asarray(a) for a in (P, W_Q, W_K, W_V))
    check_attention_args(X[0], P, W_Q, W_K, W_V, chunk_size)
    _v.check_finite("X", X)
    chunk = None if chunk_size is None else int(chunk_size)
    return jax.vmap(lambda x: prefix_attention_jit(x, P, W_Q, W_K, W_V, bool(causal), chunk))(X)
