"""Feature maps ``phi: R^d -> R^r`` for NTK-Attention (spec section 4, paper 1).

NTK-Attention replaces the prefix block of the attention matrix, ``exp(<q, k_r> / sqrt(d))``,
by an inner product of features ``<phi(q), phi(k_r)>``, so that a prefix of any length m is
summarised by ``Z = sum_r phi(k_r) v_r^T`` and ``k = sum_r phi(k_r)``.  Here ``d`` is the key
dimension (the last axis of ``q`` and ``k``), the same ``d`` as in the ``1/sqrt(d)`` logit scale
of :mod:`theory.prefix_attention`.

Three maps are provided.

``taylor`` (degree ``g >= 0``)
    The degree-g Taylor polynomial of the exponential kernel::

        <phi(q), phi(k)> = sum_{j=0..g} <q, k>^j / (j! d^{j/2})

    built from symmetric monomials.  By the multinomial theorem
    ``<q, k>^j = sum_{|alpha| = j} (j! / alpha!) q^alpha k^alpha`` (``alpha`` a multi-index in
    N^d, ``alpha! = prod_i alpha_i!``), so with ``x~ = x / d^{1/4}``::

        phi_alpha(x) = x~^alpha / sqrt(alpha!),     |alpha| <= g

    reproduces the sum term by term.  There is one feature per multiset of at most g
    coordinates: ``r = sum_{j<=g} C(d+j-1, j) = C(d+g, g)`` (the tensor-power map would need
    ``sum_j d^j``).  Features are built degree by degree: every degree-j monomial is its
    degree-(j-1) parent (drop the largest index ``i``) times ``x~_i / sqrt(a_i)``, where ``a_i``
    is the multiplicity of ``i`` in the new monomial, which turns ``1/sqrt(alpha!)`` into a
    running product.  Memory is O(n r) for n points (no factor g).  Features are ordered by
    degree, so the first ``C(d+g', g')`` features of the degree-g map are the degree-g' map
    (g' <= g): one summary of degree g gives every lower degree by slicing.

``elu`` (the public reference code of paper 1, ``ntk_attn_demo.py``)
    ``phi(x) = ELU(x / d^{1/4}) + 1`` element-wise, ``r = d``.  Every feature is positive, so
    ``<phi(q), phi(k)> > 0``, but it is *not* an approximation of ``exp(<q,k>/sqrt d)`` and
    carries no error guarantee.  The reference code replaces the trained ``k`` by ``|k|``
    (element-wise absolute value) in the normaliser: with ``phi(q) > 0`` that keeps the prefix
    term ``phi(q)^T |k|`` of the denominator non-negative whatever value the optimiser gives
    ``k``, so the normaliser never vanishes or changes sign.  For exact summaries
    ``k = sum_r phi(k_r) > 0`` already and ``|k| = k`` (see ``abs_k`` in
    :func:`theory.ntk_attn.ntk_attention.ntk_attention`).

``exact``
    The exponential kernel ``exp(<q, k> / sqrt(d))`` itself.  It has no finite feature map, so
    there is no ``(Z, k)`` summary; NTK-Attention then keeps the prefix keys and values
    (:class:`theory.ntk_attn.ntk_attention.ExactSummary`) and must agree with prefix attention to
    rounding.  It exists to test the NTK-Attention code path.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from theory import validation as _v

__all__ = [
    "FEATURES",
    "check_feature",
    "feature_dim",
    "taylor_dim",
    "taylor_features",
    "taylor_kernel",
    "elu_features",
    "exp_kernel",
    "feature_map",
    "feature_kernel",
]

FEATURES = ("taylor", "elu", "exact")


def check_feature(feature, g=None) -> tuple[str, int | None]:
    """Validate a (feature, g) pair; return ``(feature, g)`` with ``g`` an int for taylor, else None."""
    if feature not in FEATURES:
        raise _v.InputError(f"feature must be one of {FEATURES}, got {feature!r}")
    if feature == "taylor":
        if g is None:
            raise _v.InputError("g (the Taylor degree) is required for feature='taylor'")
        return feature, _v.check_count("g", g, minimum=0)
    return feature, None


def taylor_dim(d: int, g: int) -> int:
    """Number of symmetric monomials of degree <= g in d variables: ``C(d + g, g)``."""
    d = _v.check_count("d", d)
    g = _v.check_count("g", g, minimum=0)
    return math.comb(d + g, g)


def feature_dim(d: int, *, feature: str, g: int | None = None) -> int | None:
    """Feature dimension r: ``C(d+g, g)`` (taylor), ``d`` (elu), ``None`` (exact: infinite)."""
    feature, g = check_feature(feature, g)
    d = _v.check_count("d", d)
    if feature == "taylor":
        return math.comb(d + g, g)
    if feature == "elu":
        return d
    return None


@functools.lru_cache(maxsize=32)
def _monomial_tables(d: int, g: int):
    """Per degree j = 1..g: (parent index in degree j-1, appended index i, 1/sqrt(mult of i)).

    Degree-j monomials are the sorted index tuples ``i_1 <= ... <= i_j``, enumerated in
    lexicographic order by appending ``i >= i_{j-1}`` to each degree-(j-1) tuple.  Pure
    memoisation of a constant table (no state that changes results).
    """
    tables = []
    prev_last = np.full(1, 0, np.int64)  # degree 0: the empty tuple (may append any index)
    prev_run = np.zeros(1, np.int64)  # length of the trailing run of the last index
    for _ in range(g):
        parents, last, run = [], [], []
        for p, (l0, r0) in enumerate(zip(prev_last, prev_run)):
            for i in range(int(l0), d):
                parents.append(p)
                last.append(i)
                run.append(r0 + 1 if (i == l0 and r0 > 0) else 1)
        parents = np.asarray(parents, np.int64)
        last = np.asarray(last, np.int64)
        run = np.asarray(run, np.int64)
        tables.append((parents, last, 1.0 / np.sqrt(run.astype(np.float64))))
        prev_last, prev_run = last, run
    return tuple(tables)


def _taylor(x, g):
    d = x.shape[-1]
    xs = x * jnp.asarray(d, x.dtype) ** -0.25
    block = jnp.ones(x.shape[:-1] + (1,), x.dtype)
    blocks = [block]
    for parents, last, inv_sqrt in _monomial_tables(d, g):
        block = block[..., parents] * xs[..., last] * jnp.asarray(inv_sqrt, x.dtype)
        blocks.append(block)
    return jnp.concatenate(blocks, axis=-1)


def _elu(x):
    """``ELU(x~) + 1`` evaluated without cancellation: ``x~ + 1`` for ``x~ > 0``, ``exp(x~)`` else.

    ``jax.nn.elu(x~) + 1`` computes ``expm1(x~) + 1`` for ``x~ < 0``, which cancels: its absolute
    error ``u`` is a relative error ``u e^{-x~}`` (every digit lost below ``x~ ~ -37`` in
    float64, ``-17`` in float32).  This form has relative error of a few ulp everywhere.
    """
    d = x.shape[-1]
    xs = x * jnp.asarray(d, x.dtype) ** -0.25
    return jnp.where(xs > 0, xs + 1, jnp.exp(jnp.minimum(xs, 0)))


def features_unchecked(x, feature, g):
    """Unvalidated feature map (usable under jit); ``feature`` and ``g`` are static."""
    if feature == "taylor":
        return _taylor(x, g)
    if feature == "elu":
        return _elu(x)
    raise ValueError(f"feature {feature!r} has no finite feature map")


_features_jit = jax.jit(features_unchecked, static_argnames=("feature", "g"))


@functools.partial(jax.jit, static_argnames=("g",))
def _taylor_poly(z, g):
    term = jnp.ones_like(z)
    total = term
    for j in range(1, g + 1):
        term = term * z / j
        total = total + term
    return total


def _check_points(name, x):
    x = jnp.asarray(x)
    if x.ndim < 1 or x.shape[-1] < 1:
        raise _v.InputError(f"{name} must have a last axis of length d >= 1, got shape {x.shape}")
    _v.check_dtype(f"{name}.dtype", x.dtype)
    _v.check_finite(name, x)
    return x


@_v.validate_args(x="array")
def taylor_features(x, *, g: int):
    """Symmetric-monomial Taylor features ``phi_alpha(x) = (x/d^{1/4})^alpha / sqrt(alpha!)``.

    Args:
        x: points, (..., d) with d >= 1, float32 or float64.
        g: Taylor degree, an integer >= 0.

    Returns:
        Features (..., C(d+g, g)) in the dtype of ``x``: degree 0 first, then degree 1, ... .

    Raises:
        InputError: ``x`` is not numeric, has no last axis of length >= 1, is not
            float32/float64 (float64 without x64), or holds NaN/inf; ``g`` is not an integer >= 0.
    """
    x = _check_points("x", x)
    g = _v.check_count("g", g, minimum=0)
    return _features_jit(x, "taylor", g)


def elu_features(x):
    """The reference-code map ``ELU(x / d^{1/4}) + 1``; ``x``: (..., d), returns (..., d)."""
    return _features_jit(_check_points("x", x), "elu", None)


@_v.validate_args(x="array")
def feature_map(x, *, feature: str, g: int | None = None):
    """``phi(x)`` for ``feature`` in ('taylor', 'elu'); the 'exact' kernel has no finite map.

    Args:
        x: points, (..., d) with d >= 1, float32 or float64.
        feature: ``'taylor'`` or ``'elu'``.
        g: Taylor degree (integer >= 0), required for ``'taylor'``, ignored otherwise.

    Returns:
        Features (..., r): r = C(d+g, g) for taylor, r = d for elu; dtype of ``x``.

    Raises:
        InputError: ``feature`` is unknown or ``'exact'``, ``g`` is missing or not an integer
            >= 0 for taylor, or ``x`` fails the checks of :func:`taylor_features`.
    """
    feature, g = check_feature(feature, g)
    if feature == "exact":
        raise _v.InputError("feature='exact' has no finite feature map; use exp_kernel or ExactSummary")
    return _features_jit(_check_points("x", x), feature, g)


def _pair(q, k):
    q = _check_points("q", q)
    k = _check_points("k", k)
    if q.shape[-1] != k.shape[-1]:
        raise _v.InputError(f"q and k must share the last axis d, got {q.shape} and {k.shape}")
    return q, k


def taylor_kernel(q, k, *, g: int):
    """Closed form ``sum_{j<=g} <q,k>^j / (j! d^{j/2})`` for rows q (n1, d), k (n2, d): (n1, n2).

    This is what ``taylor_features(q) @ taylor_features(k).T`` must equal (the test of the map).
    """
    q, k = _pair(q, k)
    g = _v.check_count("g", g, minimum=0)
    return _taylor_poly((q @ k.T) / jnp.sqrt(jnp.asarray(q.shape[-1], q.dtype)), g)


def exp_kernel(q, k):
    """The exact kernel ``exp(<q, k> / sqrt(d))`` for rows q (n1, d), k (n2, d): (n1, n2)."""
    q, k = _pair(q, k)
    return jnp.exp((q @ k.T) / jnp.sqrt(jnp.asarray(q.shape[-1], q.dtype)))


def feature_kernel(q, k, *, feature: str, g: int | None = None):
    """``<phi(q), phi(k)>`` for every pair of rows (the exact kernel for feature='exact')."""
    feature, g = check_feature(feature, g)
    if feature == "exact":
        return exp_kernel(q, k)
    q, k = _pair(q, k)
    return _features_jit(q, feature, g) @ _features_jit(k, feature, g).T
