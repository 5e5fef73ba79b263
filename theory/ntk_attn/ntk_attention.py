"""NTK-Attention: prefix attention with the prefix replaced by a fixed-size summary.

Spec section 4, paper 1 ("Towards Infinite-Long Prefix in Transformer") and its public
reference code.  Notation as in :mod:`theory.prefix_attention`: input ``X`` (L x d), frozen
``W_Q, W_K`` (d x d_k) and ``W_V`` (d x d_v), prefix ``P`` (m x d); ``Q = X W_Q``,
``K_X = X W_K``, ``V_X = X W_V``, prefix keys ``k_r = W_K^T p_r`` and values ``v_r = W_V^T p_r``.

Prefix summary (computed exactly from P, or trained: :mod:`theory.ntk_attn.train`)::

    Z = sum_r phi(k_r) v_r^T  in R^{r x d_v},      k = sum_r phi(k_r)  in R^r

``Z`` and ``k`` are sums over the m prefix rows, so they are streamed in row chunks with
:func:`theory.streaming.row_chunk_sum`: working memory is O(chunk r + r d_v), independent of m
(m = 10^7 fits; only P itself is O(m d)).

Forward pass (the input-token block is exact, only the prefix block is approximated)::

    A_X = exp(Q K_X^T / sqrt(d_k))   (L x L, optionally causally masked: entry (i, j) kept iff j <= i)
    NTKAttn(X) = diag(A_X 1 + phi(Q) k)^{-1} (A_X V_X + phi(Q) Z)

With the exact kernel (``feature='exact'``, :class:`ExactSummary`) ``phi(Q) k`` and ``phi(Q) Z``
become ``sum_r exp(z_r)`` and ``sum_r exp(z_r) v_r`` with ``z_r = <q, k_r>/sqrt(d_k)``, and
the formula is prefix attention itself (the causal mask never touches the prefix).

Numerical stabilisation.  Row i is a ratio of two sums; multiplying both by ``exp(-M_i)``
leaves it unchanged for any ``M_i``.  The reference code takes ``M_i`` = the row maximum of
the *input* block, ``max_j z^X_ij``: the input block is exact and exponentiated, so that alone
keeps ``exp(z^X_ij - M_i) <= 1``, while the prefix term, a polynomial value (taylor) or a
positive sum (elu) rather than an exponential, is just multiplied by ``exp(-M_i)``.  That
fails when the input logits are all very negative (``exp(-M_i)`` overflows) or when the
prefix term dominates by a huge factor.  Here the prefix part is carried as
``exp(l_i) (a_i, b_i)`` with ``a_i = psi_i^T k`` and ``b_i = Z^T psi_i``, ``psi_i = exp(-l_i) phi(q_i)``
(``l_i = 0`` for taylor; for elu ``l_i = min(0, max_j x~_ij)``, so that the features of a very
negative query do not underflow) or,
for the exact kernel, ``l_i = max_r z_ir`` and ``a_i = sum_r exp(z_ir - l_i)``, and::

    M_i = max( max_j z^X_ij ,  l_i + log|a_i| )

so both the input weights ``exp(z^X_ij - M_i)`` and the prefix weight ``exp(l_i - M_i) |a_i|``
are at most 1 and one of them equals 1: nothing overflows and the denominator is at least 1
whenever ``a_i >= 0``.  ``M_i`` is wrapped in ``stop_gradient`` (it cancels exactly, so
gradients are unchanged).  ``exp(-M_i)`` can only overflow when both the input logits and
``|a_i|`` are below ``exp(-708)`` (float64) / ``exp(-87)`` (float32), a degenerate case.
A trained summary can make ``a_i`` negative (taylor features are signed); the formula is then
evaluated as written (``abs_k=True`` gives the reference code's ``|k|``, see
:mod:`theory.ntk_attn.feature_maps`).
"""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from theory import validation as _v
from theory.ntk_attn._forward import (ExactSummary, Summary, check_forward_args, default_chunk, forward_unchecked,
                                      forward_unchecked_jit, summary_unchecked)
from theory.ntk_attn.feature_maps import check_feature, feature_dim
from theory.ntk_attn.rounding import certified_unchecked, ntk_attention_certified

__all__ = ["Summary", "ExactSummary", "prefix_summary", "ntk_attention", "ntk_attention_batch"]


# ---------------------------------------------------------------------------------------------
# Prefix summary
# ---------------------------------------------------------------------------------------------


@_v.validate_args(P=2, W_K=2, W_V=2)
def prefix_summary(P, W_K, W_V, *, feature: str, g: int | None = None, chunk_size: int | None = None):
    """Exact summary of the prefix ``P`` (m, d) for ``feature``.

    Args:
        P: prefix rows, (m, d), float32 or float64.
        W_K: key projection, (d, d_k).
        W_V: value projection, (d, d_v).
        feature: ``'taylor'``, ``'elu'`` or ``'exact'``.
        g: Taylor degree (integer >= 0), required for ``'taylor'``.
        chunk_size: rows summed per chunk (default: :func:`default_chunk`).

    Returns:
        :class:`Summary` ``(Z, k)`` with ``Z = sum_r phi(W_K^T p_r)(W_V^T p_r)^T`` (r, d_v) and
        ``k = sum_r phi(W_K^T p_r)`` (r,); for ``feature='exact'`` an :class:`ExactSummary` of
        the prefix keys (m, d_k) and values (m, d_v).

    Raises:
        InputError: unknown ``feature`` or bad ``g``; ``P`` not a float32/float64 2-D array or
            not finite; ``W_K``/``W_V`` not finite 2-D with d rows; ``chunk_size`` not an
            integer >= 1.
    """
    feature, g = check_feature(feature, g)
    P, W_K, W_V = (jnp.asarray(a) for a in (P, W_K, W_V))
    _v.check_matrix("P", P)
    _v.check_dtype("P.dtype", P.dtype)
    _v.check_projections(P.shape[1], W_K=W_K, W_V=W_V, rows="the columns of P")
    _v.check_finite("P", P)
    if feature == "exact":
        return ExactSummary(P @ W_K, P @ W_V)
    r = feature_dim(W_K.shape[1], feature=feature, g=g)
    chunk = default_chunk(r) if chunk_size is None else _v.check_count("chunk_size", chunk_size)
    return summary_unchecked(P, W_K, W_V, feature, g, chunk)


# ---------------------------------------------------------------------------------------------
# Forward pass
# ---------------------------------------------------------------------------------------------


PRECISION_LOSS = ("raise", "warn", "ignore")


def _precision_verdict(out, bound, on_precision_loss):
    """Raise / warn as ``on_precision_loss`` says when ``bound`` (rounding, per row) is inf or >= |out|."""
    bound = np.asarray(bound)
    if not np.all(np.isfinite(bound)):
        bad = int(np.size(bound) - np.count_nonzero(np.isfinite(bound)))
        msg = (f"NTK-Attention: {bad} row(s) have no certified digit in {out.dtype}: rounding in the "
               "prefix term phi(q)^T Z can exceed the result (large-norm queries/keys whose feature "
               "products cancel; docs/ntk_attention_bound.md, 'Rounding'); use float64, smaller "
               "norms, or feature='exact'")
        if on_precision_loss == "raise":
            raise _v.PrecisionLossError(msg)
        warnings.warn(msg, _v.PrecisionLossWarning, stacklevel=3)
        return
    size = np.max(np.abs(np.asarray(out)), axis=-1)
    if np.any((bound >= size) & (bound > 0)):
        warnings.warn(f"NTK-Attention: the certified rounding error ({float(np.max(bound)):.3g}) is as "
                      "large as some output row; those rows have no certified digit",
                      _v.PrecisionLossWarning, stacklevel=3)


def _check_precision_mode(on_precision_loss):
    if on_precision_loss not in PRECISION_LOSS:
        raise _v.InputError(f"on_precision_loss must be one of {PRECISION_LOSS}, got {on_precision_loss!r}")


@_v.validate_args(X=2, W_Q=2, W_K=2, W_V=2)
def ntk_attention(X, summary, W_Q, W_K, W_V, *, feature: str, g: int | None = None,
                  causal: bool = False, abs_k: bool = False, on_precision_loss: str = "raise"):
    """``diag(A_X 1 + phi(Q) k)^{-1} (A_X V_X + phi(Q) Z)`` for one sequence.

    Stabilised as in the module docstring; runs in the dtype of the inputs.

    Args:
        X: input tokens, (L, d), float32 or float64.
        summary: :class:`Summary` ``(Z (r, d_v), k (r,))``, or :class:`ExactSummary`
            ``(K (m, d_k), V (m, d_v))`` for ``feature='exact'``.
        W_Q: query projection, (d, d_k).
        W_K: key projection, (d, d_k).
        W_V: value projection, (d, d_v).
        feature: ``'taylor'``, ``'elu'`` or ``'exact'``.
        g: Taylor degree (integer >= 0), required for ``'taylor'``.
        causal: mask the input block only (entry (i, j) kept iff j <= i).
        abs_k: use ``|k|`` in the normaliser (reference code).
        on_precision_loss: ``'raise'``, ``'warn'`` or ``'ignore'`` (below).

    Returns:
        The output, (L, d_v), in the dtype of ``X``.

    For finite features the output comes with the rounding bound of
    :func:`theory.ntk_attn.rounding.ntk_attention_certified` (summary taken as exact data), in
    the same jitted pass.  ``on_precision_loss``: 'raise' (default) raises
    :class:`theory.PrecisionLossError` where that bound is infinite (no certified digit: the
    computed normaliser is not provably positive) and warns (:class:`theory.PrecisionLossWarning`)
    where it is at least the row's size; 'warn' only warns; 'ignore' skips the bound.  The full
    guarantee (truncation + rounding of summary and forward) is
    ``bounds.instance_output_bound + ntk_attention_certified(..., majorant=...).rounding``.

    Raises:
        InputError: unknown ``feature``/``on_precision_loss`` or bad ``g``; ``X`` not a finite
            float32/float64 2-D array; projections not finite 2-D with d rows (``W_K`` shaped
            like ``W_Q``); ``summary`` of the wrong type, shape or not finite.
        PrecisionLossError: ``on_precision_loss='raise'`` and some row has an infinite
            rounding bound (see above; warns :class:`theory.PrecisionLossWarning` otherwise).
    """
    X, W_Q, W_K, W_V = (jnp.asarray(a) for a in (X, W_Q, W_K, W_V))
    feature, g, summary = check_forward_args(X, summary, W_Q, W_K, W_V, feature, g)
    _check_precision_mode(on_precision_loss)
    _v.check_finite("X", X)
    if feature == "exact" or on_precision_loss == "ignore":
        return forward_unchecked_jit(X, summary, W_Q, W_K, W_V, feature, g, bool(causal), bool(abs_k))
    out, bound = ntk_attention_certified(X, summary, W_Q, W_K, W_V, feature=feature, g=g,
                                         causal=causal, abs_k=abs_k)
    _precision_verdict(out, bound, on_precision_loss)
    return out


@functools.partial(jax.jit, static_argnames=("feature", "g", "causal", "abs_k"))
def _forward_batch(X, summary, W_Q, W_K, W_V, feature, g, causal, abs_k):
    return jax.vmap(lambda x: forward_unchecked(x, summary, W_Q, W_K, W_V, feature, g, causal, abs_k))(X)


@_v.validate_args(X=3, W_Q=2, W_K=2, W_V=2)
def ntk_attention_batch(X, summary, W_Q, W_K, W_V, *, feature: str, g: int | None = None,
                        causal: bool = False, abs_k: bool = False, on_precision_loss: str = "raise"):
    """:func:`ntk_attention` over a batch of sequences (shared summary and projections).

    Args:
        X: input tokens, (B, L, d).
        summary, W_Q, W_K, W_V, feature, g, causal, abs_k: as in :func:`ntk_attention`.
        on_precision_loss: as in :func:`ntk_attention` (the bound is computed per sequence).

    Returns:
        The outputs, (B, L, d_v).

    Raises:
        InputError: ``X`` is not 3-D, or any argument check of :func:`ntk_attention` fails.
        PrecisionLossError: as in :func:`ntk_attention`.
    """
    X = jnp.asarray(X)
    if X.ndim != 3:
        raise _v.InputError(f"X must be a 3-D array (batch, tokens, features), got shape {X.shape}")
    W_Q, W_K, W_V = (jnp.asarray(a) for a in (W_Q, W_K, W_V))
    feature, g, summary = check_forward_args(X[0], summary, W_Q, W_K, W_V, feature, g)
    _check_precision_mode(on_precision_loss)
    _v.check_finite("X", X)
    if feature == "exact" or on_precision_loss == "ignore":
        return _forward_batch(X, summary, W_Q, W_K, W_V, feature, g, bool(causal), bool(abs_k))
    Zbar, kbar = jnp.abs(summary.Z), jnp.abs(summary.k)
    n0 = jnp.asarray(0.0, X.dtype)
    out, bound = jax.vmap(lambda x: certified_unchecked(x, summary, Zbar, kbar, n0, W_Q, W_K, W_V, feature, g,
                                               bool(causal), bool(abs_k)))(X)
    _precision_verdict(out, bound, on_precision_loss)
    return out
