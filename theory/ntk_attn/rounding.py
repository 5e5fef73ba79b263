"""Rounding-error bound of NTK-Attention, computed alongside the output.

The truncation bound of :mod:`theory.ntk_attn.bounds` is about exact arithmetic.  In floating
point the prefix term ``phi(q)^T Z`` is an inner product of signed symmetric-monomial features
whose terms are of size ``T_g(zbar)`` with ``zbar = <|q|, |k|>/sqrt(d)``, while their sum is
``sum_r T_g(z_r) ~ e^{z}`` with ``|z| <= beta``: for large-norm queries and keys that are
nearly orthogonal the terms cancel by many orders of magnitude and rounding (``u T_g(zbar)``,
``u`` the unit roundoff) swamps the truncation bound.  No evaluation from a fixed-basis summary
avoids this: storing ``Z`` rounded to the working precision already perturbs
``phi(q)^T Z`` by ``u |phi(q)|^T |Z|`` (``docs/ntk_attention_bound.md``, "Rounding").

So the guarantee is stated with the rounding term included.  With the unit roundoff ``u``
(2^-24 float32, 2^-53 float64) and ``gamma_n = n u / (1 - n u)`` (Higham), every computed
quantity of the forward pass is compared with its exact value for the *same* floating-point
inputs ``X, W_Q, W_K, W_V`` (and ``P`` when the summary comes from a prefix):

- features: ``|fl(phi_a(q~)) - phi_a(q)| <= gamma_{n_q} F_a(q)`` with the majorant
  ``F = phi(|X| |W_Q|)`` for taylor (nonnegative monomials of the absolute projections,
  ``n_q = g (d + 10)``, the projection rounding included) and ``F = phi(q~)/(1 - gamma_{n_q})``
  for elu (positive features, log-Lipschitz: ``n_q = (d + 3) max_i (|X||W_Q|)_i d_k^{-1/4} + 8``);
- prefix terms ``a = phi(q)^T k``, ``b = Z^T phi(q)``: error ``<= gamma_{N_P} F(q)^T (kbar, Zbar)``
  where ``(Zbar, kbar)`` is a :class:`SummaryMajorant` (``sum_r F(k_r) vbar_r^T`` and
  ``sum_r F(k_r)`` from :func:`prefix_summary_majorant`, whose ``n`` counts the key features,
  the value projection and the summation depth ``c + ceil(m/c) + 1`` of the streamed sum), or
  ``(|Z|, |k|)`` with ``n = 0`` when the summary is taken as exact data (a trained one);
  ``N_P = n_q + n + r + d + 10``;
- input-block weights ``e~_ij = exp(z~_ij - M_i)``: relative error ``eta_ij = exp(gamma_{2d + d_k + 4}
  zbar_ij + u |z~_ij - M_i|) (1 + gamma_4) - 1`` (logit rounding, the shift, ``exp`` to 4 ulp);
- the row ratio: with ``|N~ - N| <= E_N``, ``|D~ - D| <= E_D`` and ``D~ > E_D``,
  ``|N~/D~ - N/D| <= (E_N + |N~/D~| E_D) / (D~ - E_D)``, plus the final division.

First-order terms are kept exactly; the second-order ones and the rounding of the bound's own
evaluation (sums of nonnegative terms) are covered by a factor 2, valid because every gamma is
capped at 0.01 (beyond that the bound is ``inf``: "no guarantee at this precision").  The
matmuls must be IEEE float32/float64 (CPU; on GPUs set ``jax_default_matmul_precision`` to
``"highest"``, TF32 is not covered).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from theory import validation as _v
from theory.ntk_attn._forward import (Summary, check_forward_args, default_chunk, elu_scaled_features,
                                      forward_parts_unchecked)
from theory.ntk_attn.feature_maps import check_feature, feature_dim, features_unchecked
from theory.streaming import row_chunk_sum

__all__ = [
    "SummaryMajorant",
    "Certified",
    "unit_roundoff",
    "summation_depth",
    "prefix_summary_majorant",
    "ntk_attention_certified",
]

GAMMA_CAP = 0.01  # gamma_n beyond this is reported as inf (no guarantee)


class SummaryMajorant(NamedTuple):
    """``Z`` (r, d_v) = sum_r F(k_r) vbar_r^T, ``k`` (r,) = sum_r F(k_r), ``n``: rounding count."""

    Z: jax.Array
    k: jax.Array
    n: float


class Certified(NamedTuple):
    """NTK-Attention output (L, d_v) and a bound (L,) on ``||computed - exact-arithmetic||_inf`` per row."""

    output: jax.Array
    rounding: jax.Array


def unit_roundoff(dtype) -> float:
    """``u``: 2^-24 for float32, 2^-53 for float64."""
    dt = _v.check_dtype("dtype", dtype)
    return float(np.finfo(dt).eps) / 2


def summation_depth(m, chunk_size) -> int:
    """Additions any one row's term passes through in :func:`row_chunk_sum`: ``c + ceil(m/c) + 1``."""
    m = _v.check_count("m", m)
    c = min(_v.check_count("chunk_size", chunk_size), m)
    return c + -(-m // c) + 1


def _gamma(n, u):
    nu = n * u
    return jnp.where(nu <= GAMMA_CAP, nu / (1 - nu), jnp.inf)


# ---------------------------------------------------------------------------------------------
# Summary with its majorant (one pass over P)
# ---------------------------------------------------------------------------------------------


def _majorant_features(x, xbar, feature, g):
    """``F``: taylor ``phi(xbar)``; elu the computed features (the caller divides by 1 - gamma)."""
    if feature == "taylor":
        return features_unchecked(xbar, "taylor", g)
    return features_unchecked(x, "elu", None)


@functools.partial(jax.jit, static_argnames=("feature", "g", "chunk_size"))
def _summary_majorant(P, W_K, W_V, feature, g, chunk_size):
    aK, aV = jnp.abs(W_K), jnp.abs(W_V)

    tiny = float(jnp.finfo(P.dtype).tiny)

    def chunk(P_c):
        K_c = P_c @ W_K
        phi = features_unchecked(K_c, feature, g)
        Pa = jnp.abs(P_c)
        Kbar = Pa @ aK
        F = _majorant_features(K_c, Kbar, feature, g) + _underflow(Kbar, feature, g, tiny)
        Vbar = Pa @ aV
        return (phi.T @ (P_c @ W_V), jnp.sum(phi, axis=0), F.T @ Vbar + P_c.shape[0] * tiny, jnp.sum(F, axis=0))

    Z, k, Zbar, kbar = row_chunk_sum(chunk, (P,), chunk_size)
    kmax = jnp.max(jnp.abs(P) @ aK)
    return Z, k, Zbar, kbar, kmax


def _underflow(xbar, feature, g, tiny):
    """Absolute error a feature can pick up from underflow (results below the smallest normal
    ``tiny`` are flushed or subnormal): ``tiny`` per operation, grown by later factors ``<= max(1, xbar)``."""
    if feature == "taylor":
        grow = jnp.maximum(1.0, jnp.max(xbar, axis=-1, keepdims=True) * xbar.shape[-1] ** -0.25)
        return (2 * g + 2) * tiny * grow**g
    return 2 * tiny * jnp.ones(xbar.shape[:-1] + (1,), xbar.dtype)


def _feature_count(feature, g, d, d_k, xmax):
    if feature == "taylor":
        return g * (d + 10)
    return (d + 3) * xmax * d_k**-0.25 + 8


@_v.validate_args(P=2, W_K=2, W_V=2)
def prefix_summary_majorant(P, W_K, W_V, *, feature: str, g: int | None = None, chunk_size: int | None = None):
    """The exact summary of ``P`` and its :class:`SummaryMajorant`, in one streamed pass.

    Args:
        P: (m, d) prefix; W_K: (d, d_k); W_V: (d, d_v).
        feature: 'taylor' or 'elu'; g: Taylor degree (taylor only).
        chunk_size: rows per chunk (default :func:`theory.ntk_attn._forward.default_chunk`).
    Returns:
        ``(Summary, SummaryMajorant)``; the summary equals :func:`prefix_summary`'s; the
        majorant's ``n`` counts key features, value projection and summation depth, so that
        ``|Z~ - Z_exact| <= gamma_n Zbar`` and ``|k~ - k_exact| <= gamma_n kbar`` entry-wise.
    Raises:
        InputError: bad arrays, feature 'exact' (it has no finite summary).
    """
    feature, g = check_feature(feature, g)
    if feature == "exact":
        raise _v.InputError("feature='exact' has no finite summary, so no summary majorant")
    P, W_K, W_V = (jnp.asarray(a) for a in (P, W_K, W_V))
    _v.check_matrix("P", P)
    _v.check_dtype("P.dtype", P.dtype)
    _v.check_projections(P.shape[1], W_K=W_K, W_V=W_V, rows="the columns of P")
    _v.check_finite("P", P)
    r = feature_dim(W_K.shape[1], feature=feature, g=g)
    chunk = default_chunk(r) if chunk_size is None else _v.check_count("chunk_size", chunk_size)
    Z, k, Zbar, kbar, kmax = _summary_majorant(P, W_K, W_V, feature, g, chunk)
    d, d_k = P.shape[1], W_K.shape[1]
    n_k = _feature_count(feature, g, d, d_k, float(kmax))
    n = float(n_k + d + 2 + summation_depth(P.shape[0], chunk))
    if feature == "elu":  # F = computed features: divide by (1 - gamma_{n_k})
        scale = 1.0 / (1.0 - min(float(_gamma(n_k, unit_roundoff(Z.dtype))), 0.5))
        Zbar, kbar = Zbar * scale, kbar * scale
    return Summary(Z, k), SummaryMajorant(Zbar, kbar, n)


# ---------------------------------------------------------------------------------------------
# Forward pass with its bound
# ---------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("feature", "g", "causal", "abs_k"))
def certified_unchecked(X, summary, Zbar, kbar, n_sum, W_Q, W_K, W_V, feature, g, causal, abs_k):
    num, den, (Q, z_X, V_X, M, e_X, f) = forward_parts_unchecked(X, summary, W_Q, W_K, W_V, feature, g, causal, abs_k)
    out = num / den[:, None]
    u = float(np.finfo(X.dtype).eps) / 2
    L, d = X.shape
    d_k = W_Q.shape[1]
    r = Zbar.shape[0]
    Xa = jnp.abs(X)
    Qbar, KXbar, VXbar = Xa @ jnp.abs(W_Q), Xa @ jnp.abs(W_K), Xa @ jnp.abs(W_V)
    scale = 1.0 / jnp.sqrt(jnp.asarray(d_k, X.dtype))
    zbar = (Qbar @ KXbar.T) * scale

    # input block: relative error of each weight, then the weighted sums
    live = jnp.isfinite(z_X)
    dz = _gamma(2 * d + d_k + 4, u) * zbar + u * jnp.abs(jnp.where(live, z_X, 0) - M[:, None])
    eta = jnp.exp(dz) * (1 + _gamma(4, u)) - 1
    zeta = jnp.where(eta < 0.5, eta / (1 - eta), jnp.inf)
    wX = jnp.where(e_X > 0, e_X * (zeta + (1 + zeta) * _gamma(d, u) + _gamma(L + 2, u)), 0)
    dX = jnp.where(e_X > 0, e_X * (zeta + _gamma(L + 2, u)), 0)
    E_N = wX @ VXbar
    E_D = jnp.sum(dX, axis=1)

    # prefix terms
    tiny = float(jnp.finfo(X.dtype).tiny)
    if feature == "taylor":
        Fq = features_unchecked(Qbar, "taylor", g)
        n_q = jnp.full((L,), g * (d + 10), X.dtype)
    else:  # the row-scaled features psi of _prefix_terms (their scale exp(c) is inside f)
        n_q = _feature_count(feature, g, d, d_k, jnp.max(Qbar, axis=1))
        Fq = elu_scaled_features(Q)[1] / (1 - jnp.minimum(_gamma(n_q, u), 0.5))[:, None]
    Fq = Fq + _underflow(Qbar, feature, g, tiny)
    g_P = _gamma(n_q + n_sum + r + d + 10, u)
    # underflow of the products in the dot products and in the input block: tiny per product
    uf = (L + r + 4) * tiny
    E_N = E_N + (f * g_P)[:, None] * (Fq @ Zbar) + ((1 + f) * uf)[:, None]
    E_D = E_D + f * g_P * (Fq @ kbar) + (1 + f) * uf

    # the final additions, the ratio and the division
    E_N = E_N + _gamma(2, u) * jnp.abs(num)
    E_D = E_D + _gamma(2, u) * jnp.abs(den)
    gap = den - E_D
    err = (E_N + jnp.abs(out) * E_D[:, None]) / jnp.where(gap > 0, gap, 1)[:, None] + _gamma(2, u) * jnp.abs(out)
    bound = 2 * jnp.max(err, axis=1)
    ok = (gap > 0) & jnp.all(jnp.isfinite(out), axis=1) & jnp.isfinite(bound)
    return out, jnp.where(ok, bound, jnp.inf)


def _check_majorant(majorant, summary):
    if majorant is None:
        return jnp.abs(summary.Z), jnp.abs(summary.k), 0.0
    if not isinstance(majorant, SummaryMajorant):
        raise _v.InputError("majorant must be a SummaryMajorant (from prefix_summary_majorant) or None")
    Zbar, kbar = jnp.asarray(majorant.Z), jnp.asarray(majorant.k)
    if Zbar.shape != summary.Z.shape or kbar.shape != summary.k.shape:
        raise _v.InputError(f"majorant shapes {Zbar.shape}, {kbar.shape} do not match the summary "
                            f"{summary.Z.shape}, {summary.k.shape}")
    n = float(majorant.n)
    if not (math.isfinite(n) and n >= 0):
        raise _v.InputError(f"majorant.n must be a finite number >= 0, got {majorant.n!r}")
    return Zbar, kbar, n


@_v.validate_args(X=2, W_Q=2, W_K=2, W_V=2)
def ntk_attention_certified(X, summary, W_Q, W_K, W_V, *, feature: str, g: int | None = None,
                            causal: bool = False, abs_k: bool = False, majorant=None) -> Certified:
    """NTK-Attention for one sequence with a bound on its rounding error, in one jitted pass.

    Args:
        X: (L, d); summary: :class:`theory.ntk_attn.ntk_attention.Summary` (r, d_v), (r,);
        W_Q, W_K: (d, d_k); W_V: (d, d_v); feature: 'taylor' or 'elu'; g: degree (taylor).
        causal, abs_k: as :func:`theory.ntk_attn.ntk_attention.ntk_attention`.
        majorant: :class:`SummaryMajorant` of the summary (from :func:`prefix_summary_majorant`):
            the bound is then against the exact-arithmetic formula with the exact summary of
            ``P``; ``None`` takes the summary as exact data (trained summaries).
    Returns:
        :class:`Certified`: ``output`` (L, d_v), bit-for-bit what is bounded, and ``rounding``
        (L,) with ``||output_i - exact_i||_inf <= rounding_i``; ``inf`` where the working
        precision certifies nothing (the computed denominator is not provably positive, a
        gamma exceeds 0.01, or the output is not finite).
    Raises:
        InputError: bad arrays or summaries, feature 'exact'.
    """
    X, W_Q, W_K, W_V = (jnp.asarray(a) for a in (X, W_Q, W_K, W_V))
    feature, g, summary = check_forward_args(X, summary, W_Q, W_K, W_V, feature, g)
    if feature == "exact":
        raise _v.InputError("ntk_attention_certified needs a finite feature ('taylor' or 'elu')")
    _v.check_finite("X", X)
    Zbar, kbar, n = _check_majorant(majorant, summary)
    out, bound = certified_unchecked(X, summary, Zbar.astype(X.dtype), kbar.astype(X.dtype), jnp.asarray(n, X.dtype),
                            W_Q, W_K, W_V, feature, g, bool(causal), bool(abs_k))
    return Certified(out, bound)
