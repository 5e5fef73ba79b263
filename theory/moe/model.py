"""One prefix-attention row as a softmax-gated mixture of experts (spec section 5, paper 2).

Source: Le, Nguyen, Nguyen, Tran, Le, Ho, "Revisiting Prefix-tuning: Statistical Benefits of
Reparameterization among Prompts" (ICLR 2025, arXiv 2410.02200); the derivation of the fixed
matrices from ``W_Q, W_K, W_V`` is ours and is written out in ``docs/reparam_model.md``.

Prefix-tuning prepends ``L`` prefix keys ``p^K_j`` and values ``p^V_j`` (rows in embedding space,
``R^d``) to the keys and values of one attention head.  Row ``q`` of the output, with the ``N``
input tokens stacked into ``X = (x_1; ...; x_N) in R^{N d}`` and ``x_j = E_j X``, is::

    f_G(X) = [ sum_{j<=N} exp(X^T A_j X + c_j) H_j X + sum_{j'<=L} exp((B p^K_j')^T X + b_j') C p^V_j' ]
             / D_G(X),                                            D_G = sum of the exponentials,

    A_j = E_q^T W_Q W_K^T E_j / sqrt(d_k),   H_j = W_V^T E_j,   B = E_q^T W_Q W_K^T / sqrt(d_k),
    C   = W_V^T,                             c_j = 0.

``N`` frozen "pre-trained experts" ``H_j X`` (linear in X, quadratic gates) and ``L`` "prefix
experts" ``C p^V`` (constant in X, linear gates).  Plain prefix attention has ``b_j' = 0``; a bias
``b = log m`` is what ``m`` identical prefix rows give, and free biases are the usual MoE
augmentation under which an over-specified fit can split one atom into several
(``exp(b_1) + exp(b_2) = exp(b*)``).  The mixing measure is ``G = sum_j' exp(b_j') delta_{theta_j'}``.

Prompt structures (how ``(p^K, p^V)`` are produced from the trainable parameters):

- ``nonshared``: ``p^K``, ``p^V`` free; parameters ``{"b", "pK", "pV"}``.
- ``shared_linear``: ``p^K = W1 p'``, ``p^V = W2 p'`` (reparameterisation, linear);
  parameters ``{"b", "p"}`` with ``p'`` rows in ``R^{d'}``, ``W1, W2`` fixed ``(d, d')``.
- ``shared_tanh``: ``p^K = tanh(W1 p')``, ``p^V = tanh(W2 p')`` (one-layer reparameterisation).
- ``prompt``: prompt-tuning, ``p^K = p^V = p`` (the tied prefix of spec section 1).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from theory import validation as _v

__all__ = [
    "STRUCTURES",
    "SHARED_STRUCTURES",
    "MoEFrozen",
    "Reparam",
    "MoEFeatures",
    "moe_from_attention",
    "stack_tokens",
    "check_structure",
    "check_params",
    "prompt_keys_values",
    "moe_features",
    "regression_from_features",
    "regression_jacobian",
    "moe_regression",
]

STRUCTURES = ("nonshared", "shared_linear", "shared_tanh", "prompt")
SHARED_STRUCTURES = ("shared_linear", "shared_tanh", "prompt")


class MoEFrozen(NamedTuple):
    """The fixed part of ``f_G``: ``A (N, D, D)``, ``c (N,)``, ``H (N, d_v, D)``, ``B (D, d)``, ``C (d_v, d)``."""

    A: jax.Array
    c: jax.Array
    H: jax.Array
    B: jax.Array
    C: jax.Array


class Reparam(NamedTuple):
    """Fixed reparameterisation matrices ``W1, W2`` of shape ``(d, d')`` (shared structures)."""

    W1: jax.Array
    W2: jax.Array


class MoEFeatures(NamedTuple):
    """What ``f_G`` needs from ``X``; none of it depends on the prompts, so a fit computes it once.

    ``s0 = log sum_j exp(X^T A_j X + c_j)`` (n,); ``m0 = sum_j softmax_j(...) H_j X`` (n, d_v),
    the normalised pre-trained mixture; ``U = B^T X`` (n, d), the gating feature of the prompts.
    """

    s0: jax.Array
    m0: jax.Array
    U: jax.Array


@_v.validate_args(W_Q=2, W_K=2, W_V=2)
def moe_from_attention(W_Q, W_K, W_V, *, n_tokens: int, query: int = 0, c=None) -> MoEFrozen:
    """Fixed MoE matrices of attention row ``query`` over ``n_tokens`` input tokens.

    ``W_Q, W_K``: (d, d_k); ``W_V``: (d, d_v).  With ``M = W_Q W_K^T / sqrt(d_k)`` (d x d):
    ``A_j`` has the block ``M`` at (query, j), ``H_j = W_V^T E_j``, ``B`` has ``M`` in the rows of
    block ``query``, ``C = W_V^T``, ``c_j = 0`` unless given (docs/reparam_model.md, section 1).

    Args:
        W_Q, W_K: query/key projections, (d, d_k); W_V: value projection, (d, d_v).
        n_tokens: number N of input tokens (integer >= 1).
        query: the output row, an integer in [0, N).
        c: gate biases, (N,) (default zeros).

    Returns:
        :class:`MoEFrozen` with ``A`` (N, N d, N d), ``c`` (N,), ``H`` (N, d_v, N d),
        ``B`` (N d, d), ``C`` (d_v, d).

    Raises:
        InputError: projections not finite numeric 2-D with d rows (``W_K`` shaped like
            ``W_Q``), ``n_tokens`` not an integer >= 1, ``query`` not in [0, N), or ``c`` not
            of shape (N,) or not finite.
    """
    W_Q, W_K, W_V = (jnp.asarray(a) for a in (W_Q, W_K, W_V))
    _v.check_projections(None, W_Q=W_Q, W_K=W_K, W_V=W_V)
    N = _v.check_count("n_tokens", n_tokens)
    q = _v.check_count("query", query, minimum=0)
    if q >= N:
        raise _v.InputError(f"query must be < n_tokens={N}, got {q}")
    d, d_v = W_Q.shape[0], W_V.shape[1]
    dt = jnp.result_type(W_Q, W_K, W_V)
    if c is None:
        c = jnp.zeros((N,), dt)
    c = jnp.asarray(c, dt)
    if c.shape != (N,):
        raise _v.InputError(f"c must have shape ({N},) (one bias per token), got {c.shape}")
    _v.check_finite("c", c)
    M = (W_Q @ W_K.T) / jnp.sqrt(jnp.asarray(W_Q.shape[1], dt))
    D = N * d
    A = jnp.zeros((N, D, D), dt)
    H = jnp.zeros((N, d_v, D), dt)
    for j in range(N):
        A = A.at[j, q * d:(q + 1) * d, j * d:(j + 1) * d].set(M)
        H = H.at[j, :, j * d:(j + 1) * d].set(W_V.T)
    B = jnp.zeros((D, d), dt).at[q * d:(q + 1) * d, :].set(M)
    return MoEFrozen(A=A, c=c, H=H, B=B, C=W_V.T.astype(dt))


def stack_tokens(X_tokens):
    """Stack tokens ``(n, N, d)`` (or one sequence ``(N, d)``) into ``X in R^{N d}`` rows."""
    X_tokens = jnp.asarray(X_tokens)
    if X_tokens.ndim not in (2, 3):
        raise _v.InputError(f"X_tokens must be (N, d) or (n, N, d), got shape {X_tokens.shape}")
    return X_tokens.reshape(X_tokens.shape[:-2] + (-1,))


def check_structure(structure: str) -> str:
    """``structure`` if it is one of :data:`STRUCTURES`, else :class:`theory.InputError`."""
    if structure not in STRUCTURES:
        raise _v.InputError(f"structure must be one of {STRUCTURES}, got {structure!r}")
    return structure


def _param_names(structure):
    return ("b", "pK", "pV") if structure == "nonshared" else ("b", "p")


def check_params(structure: str, params, *, d: int, reparam: Reparam | None = None, name="params") -> int:
    """Check a prompt-parameter dict for ``structure`` and return the number of prompts L.

    ``d`` is the embedding dimension of ``p^K, p^V``.  Shared-linear/tanh need ``reparam``
    (``W1, W2`` of shape ``(d, d')``) and ``p`` of shape ``(L, d')``.
    """
    check_structure(structure)
    if not isinstance(params, dict):
        raise _v.InputError(f"{name} must be a dict with keys {_param_names(structure)}, got {type(params).__name__}")
    want = _param_names(structure)
    if set(params) != set(want):
        raise _v.InputError(f"{name} for structure {structure!r} must have keys {want}, got {tuple(params)}")
    b = np.shape(params["b"])
    if len(b) != 1 or b[0] < 1:
        raise _v.InputError(f"{name}['b'] must be a 1-D array of L >= 1 biases, got shape {b}")
    L = b[0]
    if structure in ("shared_linear", "shared_tanh"):
        if reparam is None:
            raise _v.InputError(f"reparam (W1, W2) is required for structure {structure!r}")
        W1, W2 = np.shape(reparam.W1), np.shape(reparam.W2)
        if len(W1) != 2 or W1[0] != d or W2 != W1:
            raise _v.InputError(f"reparam.W1 and reparam.W2 must both have shape ({d}, d'), got {W1} and {W2}")
        _v.check_finite("reparam", tuple(reparam))
        cols = {"p": W1[1]}
    elif structure == "prompt":
        cols = {"p": d}
    else:
        cols = {"pK": d, "pV": d}
    for k, width in cols.items():
        if np.shape(params[k]) != (L, width):
            raise _v.InputError(f"{name}[{k!r}] must have shape ({L}, {width}), got {np.shape(params[k])}")
    _v.check_finite(name, params)
    return L


def prompt_keys_values(structure: str, params, reparam: Reparam | None = None):
    """``(b, K, V)``: biases (L,) and the prefix key/value rows ``p^K, p^V`` (L, d) of a structure.

    nonshared ``(pK, pV)``; shared_linear ``(p W1^T, p W2^T)``; shared_tanh
    ``(tanh(p W1^T), tanh(p W2^T))``; prompt ``(p, p)``.  Traceable (no validation).
    """
    if structure == "nonshared":
        return params["b"], params["pK"], params["pV"]
    p = params["p"]
    if structure == "prompt":
        return params["b"], p, p
    K, V = p @ reparam.W1.T, p @ reparam.W2.T
    if structure == "shared_tanh":
        K, V = jnp.tanh(K), jnp.tanh(V)
    return params["b"], K, V


@jax.jit
def features_from_arrays(X, A, c, H, B):
    """:func:`moe_features` from the frozen arrays themselves (unvalidated, jitted; the fit's inner loop)."""
    logits = jnp.einsum("nd,jde,ne->nj", X, A, X) + c  # X^T A_j X + c_j
    s0 = jax.nn.logsumexp(logits, axis=1)
    w = jnp.exp(logits - s0[:, None])
    m0 = jnp.einsum("nj,jvd,nd->nv", w, H, X)  # sum_j w_j H_j X
    return MoEFeatures(s0=s0, m0=m0, U=X @ B)


def moe_features(X, frozen: MoEFrozen) -> MoEFeatures:
    """Prompt-independent features ``(s0, m0, U)`` of inputs ``X`` (n, N d); see :class:`MoEFeatures`."""
    X = jnp.asarray(X)
    _v.check_matrix("X", X, cols=frozen.B.shape[0])
    _v.check_finite("X", X)
    return features_from_arrays(X, frozen.A, frozen.c, frozen.H, frozen.B)


def regression_from_features(features: MoEFeatures, C, b, K, V):
    """``f_G`` from features: ``(e^{s0} m0 + sum_j e^{U k_j + b_j} C v_j) / (e^{s0} + sum_j e^{U k_j + b_j})``.

    Computed as a softmax over ``[s0, U K^T + b]`` (max subtracted, no overflow).  Traceable.
    """
    s0, m0, U = features
    z = jnp.concatenate([s0[:, None], U @ K.T + b[None, :]], axis=1)
    w = jax.nn.softmax(z, axis=1)
    return w[:, :1] * m0 + w[:, 1:] @ (V @ C.T)


def regression_jacobian(features: MoEFeatures, C, b, K, V):
    """``f_G`` and its exact derivatives in ``(b, K, V)``; traceable, one pass over the data.

    With ``w = softmax([s0, U K^T + b])`` and ``c_j = C v_j``:
    ``df/db_j = w_j (c_j - f)``, ``df/dk_j = w_j (c_j - f) U^T``, ``df/dv_j = w_j C``.
    Returns ``f (n, d_v)``, ``J_b (n, d_v, L)``, ``J_K (n, d_v, L, d)``, ``J_V (n, d_v, L, d)``.
    """
    s0, m0, U = features
    z = jnp.concatenate([s0[:, None], U @ K.T + b[None, :]], axis=1)
    w = jax.nn.softmax(z, axis=1)
    vals = V @ C.T  # (L, d_v)
    f = w[:, :1] * m0 + w[:, 1:] @ vals
    J_b = jnp.swapaxes(w[:, 1:, None] * (vals[None] - f[:, None, :]), 1, 2)  # (n, d_v, L)
    J_K = J_b[..., None] * U[:, None, None, :]
    J_V = w[:, None, 1:, None] * C[None, :, None, :]
    return f, J_b, J_K, J_V


@functools.partial(jax.jit, static_argnames=("structure",))
def _regression(X, frozen, params, reparam, structure):
    feats = features_from_arrays(X, frozen.A, frozen.c, frozen.H, frozen.B)
    b, K, V = prompt_keys_values(structure, params, reparam)
    return regression_from_features(feats, frozen.C, b, K, V)


@_v.validate_args(X=2, frozen=MoEFrozen)
def moe_regression(X, frozen: MoEFrozen, params, *, structure: str, reparam: Reparam | None = None):
    """The regression function ``f_G(X)`` for inputs ``X`` and prompts ``params``.

    Args:
        X: stacked inputs, (n, N d).
        frozen: :class:`MoEFrozen` (e.g. from :func:`moe_from_attention`).
        params: prompt dict for ``structure`` (``b`` (L,) with ``pK, pV`` (L, d), or ``p``
            (L, d') / (L, d) for prompt), see :func:`check_params`.
        structure: one of ``STRUCTURES``.
        reparam: :class:`Reparam` ``W1, W2`` (d, d'), required for shared_linear/shared_tanh.

    Returns:
        ``f_G(X)``, (n, d_v).

    Raises:
        InputError: ``X`` not a finite 2-D array with N d columns, ``frozen`` not a
            :class:`MoEFrozen`, unknown ``structure``, or ``params``/``reparam`` of the wrong
            keys or shapes or not finite.
    """
    X = jnp.asarray(X)
    _v.check_matrix("X", X, cols=frozen.B.shape[0])
    _v.check_finite("X", X)
    check_params(structure, params, d=frozen.B.shape[1], reparam=reparam)
    params = {k: jnp.asarray(v, X.dtype) for k, v in params.items()}
    return _regression(X, frozen, params, reparam, structure)
