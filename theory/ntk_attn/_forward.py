"""The unvalidated NTK-Attention primitives shared by the public forms and the rounding bound.

:mod:`theory.ntk_attn.ntk_attention` (the validated summary and forward pass) and
:mod:`theory.ntk_attn.rounding` (the same forward pass with its rounding bound) both build on
these, so they live below both.  The formulas and the stabilisation are described in
:mod:`theory.ntk_attn.ntk_attention`.  Nothing here validates its arguments except
:func:`check_forward_args`.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from theory import validation as _v
from theory.ntk_attn.feature_maps import check_feature, feature_dim, features_unchecked
from theory.prefix_attention import input_block
from theory.streaming import DEFAULT_CHUNK, row_chunk_sum

__all__ = ["Summary", "ExactSummary", "default_chunk", "summary_unchecked", "elu_scaled_features",
           "forward_parts_unchecked", "forward_unchecked", "forward_unchecked_jit", "check_forward_args"]


class Summary(NamedTuple):
    """Finite prefix summary: ``Z`` (r, d_v) = sum_r phi(k_r) v_r^T and ``k`` (r,) = sum_r phi(k_r)."""

    Z: jax.Array
    k: jax.Array


class ExactSummary(NamedTuple):
    """Stand-in for the exact kernel (no finite features): prefix keys (m, d_k) and values (m, d_v)."""

    K: jax.Array
    V: jax.Array


def default_chunk(r: int) -> int:
    """Rows per chunk so that one chunk of features holds about 2^22 numbers (at most DEFAULT_CHUNK)."""
    return max(1, min(DEFAULT_CHUNK, (1 << 22) // max(1, int(r))))


@functools.partial(jax.jit, static_argnames=("feature", "g", "chunk_size"))
def summary_unchecked(P, W_K, W_V, feature, g, chunk_size):
    """Unvalidated, jitted :func:`theory.ntk_attn.ntk_attention.prefix_summary` for finite features."""
    def chunk(P_c):
        phi = features_unchecked(P_c @ W_K, feature, g)  # (c, r)
        return phi.T @ (P_c @ W_V), jnp.sum(phi, axis=0)

    Z, k = row_chunk_sum(chunk, (P,), chunk_size)
    return Summary(Z, k)


def _prefix_terms(Q, scale, summary, feature, g, abs_k):
    """``(l, a, b)`` with the prefix denominator ``exp(l) a`` (L,) and numerator ``exp(l) b`` (L, d_v)."""
    if feature == "exact":
        z_P = (Q @ summary.K.T) * scale  # (L, m)
        ell = jnp.max(z_P, axis=1)
        e_P = jnp.exp(z_P - ell[:, None])
        return ell, jnp.sum(e_P, axis=1), e_P @ summary.V
    if feature == "elu":
        ell, phi_q = elu_scaled_features(Q)
    else:
        ell, phi_q = jnp.zeros(Q.shape[:1], Q.dtype), features_unchecked(Q, feature, g)  # (L,), (L, r)
    k = jnp.abs(summary.k) if abs_k else summary.k
    return ell, phi_q @ k, phi_q @ summary.Z


def elu_scaled_features(Q):
    """``(c, psi)`` with ``phi_elu(q_i) = exp(c_i) psi_i`` and ``max_j psi_ij >= 1``: for a row whose
    scaled coordinates are all negative, ``c_i`` is their maximum and ``psi = exp(x~ - c_i)``, so
    the features cannot underflow however negative the query (float32 would lose them below
    ``x~ ~ -87``); otherwise ``c_i = 0`` and ``psi = phi``."""
    xs = Q * jnp.asarray(Q.shape[-1], Q.dtype) ** -0.25
    c = lax.stop_gradient(jnp.minimum(jnp.max(xs, axis=1), 0))
    return c, jnp.where(xs > 0, xs + 1, jnp.exp(jnp.minimum(xs, 0) - c[:, None]))


def forward_parts_unchecked(X, summary, W_Q, W_K, W_V, feature, g, causal, abs_k):
    """``(num, den, (Q, z_X, V_X, M, e_X, f))``: the row numerators (L, d_v) and denominators (L,)
    of the stabilised formula and the intermediates the rounding bound of
    :mod:`theory.ntk_attn.rounding` needs (traceable)."""
    Q, scale, z_X, V_X = input_block(X, W_Q, W_K, W_V, causal)
    ell, a, b = _prefix_terms(Q, scale, summary, feature, g, abs_k)
    mx_X = jnp.max(z_X, axis=1)
    M = lax.stop_gradient(jnp.maximum(mx_X, ell + jnp.log(jnp.abs(lax.stop_gradient(a)))))
    e_X = jnp.exp(z_X - M[:, None])  # masked entries: exp(-inf) = 0
    f = jnp.exp(ell - M)
    num = e_X @ V_X + f[:, None] * b
    den = jnp.sum(e_X, axis=1) + f * a
    return num, den, (Q, z_X, V_X, M, e_X, f)


def forward_unchecked(X, summary, W_Q, W_K, W_V, feature, g, causal, abs_k):
    """Unvalidated NTK-Attention for one sequence (traceable; used by the trainer)."""
    num, den, _ = forward_parts_unchecked(X, summary, W_Q, W_K, W_V, feature, g, causal, abs_k)
    return num / den[:, None]


forward_unchecked_jit = jax.jit(forward_unchecked, static_argnames=("feature", "g", "causal", "abs_k"))


def _check_summary(summary, feature, g, d_k, d_v):
    if feature == "exact":
        if not isinstance(summary, ExactSummary):
            raise _v.InputError("summary must be an ExactSummary (prefix keys, values) for feature='exact'")
        K, V = jnp.asarray(summary.K), jnp.asarray(summary.V)
        _v.check_matrix("summary.K", K, cols=d_k)
        _v.check_matrix("summary.V", V, cols=d_v)
        if K.shape[0] != V.shape[0]:
            raise _v.InputError(f"summary.K and summary.V must have the same rows, got {K.shape}, {V.shape}")
        _v.check_finite("summary", (K, V))
        return ExactSummary(K, V)
    if isinstance(summary, ExactSummary) or not isinstance(summary, tuple) or len(summary) != 2:
        raise _v.InputError(f"summary must be a Summary (Z, k) for feature={feature!r}")
    Z, k = jnp.asarray(summary[0]), jnp.asarray(summary[1])
    r = feature_dim(d_k, feature=feature, g=g)
    if Z.shape != (r, d_v):
        raise _v.InputError(f"summary.Z must have shape (r, d_v) = ({r}, {d_v}) for {feature}, got {Z.shape}")
    if k.shape != (r,):
        raise _v.InputError(f"summary.k must have shape (r,) = ({r},) for {feature}, got {k.shape}")
    _v.check_finite("summary", (Z, k))
    return Summary(Z, k)


def check_forward_args(X, summary, W_Q, W_K, W_V, feature, g):
    """``(feature, g, summary)`` checked for one sequence ``X`` (L, d) and its projections (arrays).

    Raises:
        InputError: unknown ``feature`` or bad ``g``; ``X`` not a float32/float64 2-D array;
            projections not 2-D with d rows; ``summary`` of the wrong type or shape, or not finite.
    """
    feature, g = check_feature(feature, g)
    _v.check_matrix("X", X)
    _v.check_dtype("X.dtype", X.dtype)
    _v.check_projections(X.shape[-1], W_Q=W_Q, W_K=W_K, W_V=W_V)
    summary = _check_summary(summary, feature, g, W_K.shape[1], W_V.shape[1])
    return feature, g, summary
