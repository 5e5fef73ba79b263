"""Trained NTK-Attention summaries (paper 1, section 4.4, rebuilt correctly).

Paper 1 trains the summary ``(Z, k)`` directly, as free parameters initialised independently of
any prefix, so that NTK-Attention matches prefix attention with a fixed (frozen) prefix P::

    minimise_{Z, k}  E_X  mean( (NTKAttn(X; Z, k) - PrefixAttn(X, P))^2 )

with ``NTKAttn(X; Z, k) = diag(A_X 1 + phi(Q) k)^{-1} (A_X V_X + phi(Q) Z)`` (the exact input
block uses the keys and values of X only; :mod:`theory.ntk_attn.ntk_attention`) and ``PrefixAttn`` the
exact prefix attention over ``[P; X]`` with queries from X (:mod:`theory.prefix_attention`).
Every optimisation step draws a fresh ``X`` with i.i.d. ``N(0, x_std^2)`` entries from
``fold_in(key, step)``; the optimiser is Adam (optax).  The whole loop is one jit-compiled
``lax.scan`` over the steps.  ``Z`` may be low rank, ``Z = Z_A Z_B`` with ``Z_A`` (r, rank) and
``Z_B`` (rank, d_v), which stores ``rank (r + d_v) + r`` numbers instead of ``r d_v + r``.

Parameters are a dict: ``{"Z": (r, d_v), "k": (r,)}`` or ``{"Z_A", "Z_B", "k"}``.
Initialisation (paper 1's script): ``Z, k ~ N(0, init_std^2)`` (low rank: ``Z_A ~ N(0,
init_std^2)``, ``Z_B ~ N(0, 1/rank)``, so that ``Z`` entries keep variance ``init_std^2``).

Two places where the public script (``ntk_attn_error.py``) differs and is not followed:
it feeds the concatenation ``[P; X]`` to the exact block as well (the prefix is then counted
twice and ``Z = k = 0`` is an exact optimum with zero loss), and it back-propagates the
element-wise squared-error matrix instead of its mean.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
from jax import lax

from theory import validation as _v
from theory.ntk_attn.feature_maps import check_feature, feature_dim
from theory.ntk_attn._forward import ExactSummary, Summary, forward_unchecked
from theory.prefix_attention import prefix_attention_batch

__all__ = [
    "init_summary_params",
    "params_from_summary",
    "summary_from_params",
    "train_summary",
    "validation_mse",
]


def init_summary_params(*, key, r: int, d_v: int, rank: int | None = None, init_std: float = 1.0,
                        dtype=jnp.float32) -> dict:
    """Random initial summary parameters (independent of any prefix), as in paper 1's script."""
    r = _v.check_count("r", r)
    d_v = _v.check_count("d_v", d_v)
    if init_std != 0:
        init_std = _v.check_positive("init_std", init_std)
    dtype = _v.check_dtype("dtype", dtype)
    kz, kb, kk = jax.random.split(key, 3)
    k = init_std * jax.random.normal(kk, (r,), dtype)
    if rank is None:
        return {"Z": init_std * jax.random.normal(kz, (r, d_v), dtype), "k": k}
    rank = _v.check_count("rank", rank)
    return {
        "Z_A": init_std * jax.random.normal(kz, (r, rank), dtype),
        "Z_B": jax.random.normal(kb, (rank, d_v), dtype) / jnp.sqrt(jnp.asarray(rank, dtype)),
        "k": k,
    }


def params_from_summary(summary) -> dict:
    """``{"Z", "k"}`` parameters holding a given (e.g. exact) :class:`Summary`."""
    return {"Z": jnp.asarray(summary[0]), "k": jnp.asarray(summary[1])}


def summary_from_params(params: dict) -> Summary:
    """The :class:`Summary` ``(Z, k)`` of a parameter dict (``Z = Z_A Z_B`` when low rank)."""
    Z = params["Z"] if "Z" in params else params["Z_A"] @ params["Z_B"]
    return Summary(Z, params["k"])


def _draw_X(key, batch_size, L, d, x_std, dtype):
    return x_std * jax.random.normal(key, (batch_size, L, d), dtype)


def _batch_forward(params, X, W_Q, W_K, W_V, feature, g, causal, abs_k, scale=1.0):
    if isinstance(params, dict):
        Z, k = summary_from_params(params)
        summary = Summary(scale * Z, scale * k)
    else:
        summary = params
    return jax.vmap(lambda x: forward_unchecked(x, summary, W_Q, W_K, W_V, feature, g, causal, abs_k))(X)


@functools.partial(jax.jit, static_argnames=("feature", "g", "L", "steps", "batch_size", "causal",
                                              "abs_k", "chunk_size"))
def _train(params0, P, W_Q, W_K, W_V, key, lr, x_std, scale, feature, g, L, steps, batch_size, causal,
           abs_k, chunk_size):
    opt = optax.adam(lr)

    def loss_fn(params, X, Y):
        Y_hat = _batch_forward(params, X, W_Q, W_K, W_V, feature, g, causal, abs_k, scale)
        return jnp.mean((Y_hat - Y) ** 2)

    def step(carry, i):
        params, state = carry
        X = _draw_X(jax.random.fold_in(key, i), batch_size, L, P.shape[1], x_std, P.dtype)
        Y = prefix_attention_batch(X, P, W_Q, W_K, W_V, causal=causal, chunk_size=chunk_size)
        loss, grads = jax.value_and_grad(loss_fn)(params, X, Y)
        updates, state = opt.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), loss

    (params, _), losses = lax.scan(step, (params0, opt.init(params0)), jnp.arange(steps))
    return params, losses


def _check_setup(P, W_Q, W_K, W_V, feature, g, L, *, allow_exact=False):
    feature, g = check_feature(feature, g)
    if feature == "exact" and not allow_exact:
        raise _v.InputError("feature='exact' has no finite summary to train; use 'taylor' or 'elu'")
    P, W_Q, W_K, W_V = (jnp.asarray(a) for a in (P, W_Q, W_K, W_V))
    _v.check_matrix("P", P)
    _v.check_dtype("P.dtype", P.dtype)
    _v.check_projections(P.shape[1], W_Q=W_Q, W_K=W_K, W_V=W_V, rows="the columns of P")
    _v.check_finite("P", P)
    return feature, g, _v.check_count("L", L), (P, W_Q, W_K, W_V)


def _check_params(params, r, d_v, dtype):
    if not isinstance(params, dict) or "k" not in params or not ("Z" in params or {"Z_A", "Z_B"} <= set(params)):
        raise _v.InputError('init must be a dict with "k" and "Z" (or "Z_A", "Z_B")')
    params = {name: jnp.asarray(a, dtype) for name, a in params.items()}
    Z = summary_from_params(params).Z
    if Z.shape != (r, d_v) or params["k"].shape != (r,):
        raise _v.InputError(f"init must give Z of shape ({r}, {d_v}) and k of shape ({r},), "
                            f"got {Z.shape} and {params['k'].shape}")
    _v.check_finite("init", params)
    return params


@_v.validate_args(P=2, W_Q=2, W_K=2, W_V=2, key="key")
def train_summary(P, W_Q, W_K, W_V, *, key, feature: str, g: int | None = None, L: int, steps: int,
                  lr: float = 1e-3, rank: int | None = None, init: dict | None = None,
                  init_std: float = 1.0, x_std: float = 1.0, batch_size: int = 1, scale: float = 1.0,
                  causal: bool = False, abs_k: bool | None = None, chunk_size: int | None = None):
    """Train ``(Z, k)`` with Adam to match ``PrefixAttn(., P)``.

    ``scale`` reparametrises the summary as ``(Z, k) = scale * (Z', k')`` with ``(Z', k')`` the
    trained parameters (returned as they are: the summary is ``scale * summary_from_params``).
    The exact summary grows linearly in m, while Adam moves each parameter by about ``lr`` per
    step, so ``scale`` of order m lets a fixed step budget reach it; 1.0 is paper 1's setup.

    ``losses`` (steps,) is the training MSE of each step, evaluated before that step's update
    on its fresh batch of ``batch_size`` inputs X (L, d) with ``N(0, x_std^2)`` entries.
    ``init`` overrides the random initialisation (:func:`init_summary_params` with ``key``);
    ``abs_k`` defaults to True for 'elu' (the reference code's ``|k|``) and False for 'taylor'.

    Args:
        P: prefix rows, (m, d), float32 or float64.
        W_Q, W_K: query/key projections, (d, d_k); W_V: value projection, (d, d_v).
        key: JAX PRNG key (initialisation and training inputs).
        feature: ``'taylor'`` or ``'elu'``; g: Taylor degree (required for taylor).
        L: tokens per training sequence; steps: Adam steps; lr: learning rate (> 0).
        rank: factor ``Z = Z_A Z_B`` with inner dimension ``rank`` (None: full ``Z``).
        init: initial parameters ``{"Z" or "Z_A", "Z_B", "k"}``; init_std: scale of the random one.
        x_std: input entry std (> 0); batch_size: sequences per step; scale: as above (> 0).
        causal, abs_k: as in :func:`theory.ntk_attn.ntk_attention.ntk_attention`.
        chunk_size: prefix rows per chunk of the exact targets.

    Returns:
        ``(params, losses)``: the trained dict (``Z`` (r, d_v) or ``Z_A`` (r, rank), ``Z_B``
        (rank, d_v); ``k`` (r,)) and the per-step losses (steps,).

    Raises:
        InputError: ``feature`` unknown or ``'exact'``, bad ``g``; ``P``/projections fail the
            shape, dtype or finiteness checks; ``key`` is not a PRNG key; a count (``L``,
            ``steps``, ``batch_size``, ``chunk_size``, ``rank``) is not an integer >= 1; ``lr``,
            ``x_std``, ``scale`` (or a nonzero ``init_std``) is not positive; ``init`` has the
            wrong keys, shapes or is not finite.
    """
    feature, g, L, (P, W_Q, W_K, W_V) = _check_setup(P, W_Q, W_K, W_V, feature, g, L)
    steps = _v.check_count("steps", steps)
    lr = _v.check_positive("lr", lr)
    x_std = _v.check_positive("x_std", x_std)
    batch_size = _v.check_count("batch_size", batch_size)
    chunk = None if chunk_size is None else _v.check_count("chunk_size", chunk_size)
    r = feature_dim(W_K.shape[1], feature=feature, g=g)
    k_init, k_data = jax.random.split(key)
    if init is None:
        init = init_summary_params(key=k_init, r=r, d_v=W_V.shape[1], rank=rank, init_std=init_std,
                                   dtype=P.dtype)
    params0 = _check_params(init, r, W_V.shape[1], P.dtype)
    abs_k = (feature == "elu") if abs_k is None else bool(abs_k)
    scale = _v.check_positive("scale", scale)
    return _train(params0, P, W_Q, W_K, W_V, k_data, lr, x_std, scale, feature, g, L, steps, batch_size,
                  bool(causal), abs_k, chunk)


@functools.partial(jax.jit, static_argnames=("feature", "g", "L", "n_batches", "batch_size", "causal",
                                              "abs_k", "chunk_size"))
def _validation(params, P, W_Q, W_K, W_V, key, x_std, scale, feature, g, L, n_batches, batch_size,
                causal, abs_k, chunk_size):
    def one(i):
        X = _draw_X(jax.random.fold_in(key, i), batch_size, L, P.shape[1], x_std, P.dtype)
        Y = prefix_attention_batch(X, P, W_Q, W_K, W_V, causal=causal, chunk_size=chunk_size)
        Y_hat = _batch_forward(params, X, W_Q, W_K, W_V, feature, g, causal, abs_k, scale)
        return jnp.mean((Y_hat - Y) ** 2), jnp.mean(Y**2)

    err, power = lax.map(one, jnp.arange(n_batches))
    return jnp.mean(err), jnp.mean(power)


def validation_mse(summary, P, W_Q, W_K, W_V, *, key, feature: str, g: int | None = None, L: int,
                   n_val: int, x_std: float = 1.0, batch_size: int = 8, scale: float = 1.0,
                   causal: bool = False, abs_k: bool | None = None, chunk_size: int | None = None):
    """``(MSE, mean square of the target)`` over ``n_val`` fresh inputs X (rounded up to batches).

    ``summary``: a parameter dict (multiplied by ``scale``, as in :func:`train_summary`), a
    :class:`Summary`, or an :class:`ExactSummary` with ``feature='exact'`` (MSE = rounding).
    """
    feature_c, g_c, L, (P_, W_Q, W_K, W_V) = _check_setup(P, W_Q, W_K, W_V, feature, g, L, allow_exact=True)
    if feature_c == "exact":
        if not isinstance(summary, ExactSummary):
            raise _v.InputError("summary must be an ExactSummary for feature='exact'")
        params = summary
    else:
        r = feature_dim(W_K.shape[1], feature=feature_c, g=g_c)
        params = summary if isinstance(summary, dict) else params_from_summary(summary)
        params = _check_params(params, r, W_V.shape[1], P_.dtype)
    n_val = _v.check_count("n_val", n_val)
    batch_size = min(_v.check_count("batch_size", batch_size), n_val)
    n_batches = -(-n_val // batch_size)
    chunk = None if chunk_size is None else _v.check_count("chunk_size", chunk_size)
    abs_k = (feature_c == "elu") if abs_k is None else bool(abs_k)
    if not isinstance(summary, dict):
        scale = 1.0
    return _validation(params, P_, W_Q, W_K, W_V, key, _v.check_positive("x_std", x_std),
                       _v.check_positive("scale", scale), feature_c, g_c, L, n_batches, batch_size,
                       bool(causal), abs_k, chunk)
