"""Error bounds, degree choice and costs for NTK-Attention with Taylor features.

Derivation step by step: ``docs/ntk_attention_bound.md``.  Summary (prefix logits
``z_r = <q, k_r>/sqrt(d)`` with ``|z_r| <= beta``, degree-g Taylor features, exact summaries):

1. Each prefix weight ``w_r = e^{z_r}`` is replaced by ``T_g(z_r) = sum_{j<=g} z_r^j / j!``.
   Its relative error ``delta_r = T_g(z_r)/e^{z_r} - 1`` satisfies, by the Lagrange remainder
   ``e^z - T_g(z) = e^xi z^{g+1}/(g+1)!`` with xi between 0 and z (so ``xi - z <= max(0, -z) <= beta``)::

       |delta_r| <= eps_g(beta) = beta^{g+1} e^{beta} / (g+1)!          (form='closed')

   The supremum over ``|z| <= beta`` is attained at ``z = -beta`` and equals::

       rho_g(beta) = int_0^beta e^u u^g / g! du
                   = sum_{k>=0} beta^{g+1+k} / (g! k! (g+1+k))              (form='exact')

   with ``beta^{g+1}/(g+1)! <= rho_g <= eps_g``; ``rho_g / eps_g -> 1`` as ``g -> inf`` or
   ``beta -> 0``.  The spec's ``beta^{g+1} e^{2 beta} / (g+1)!`` (form='spec') bounds the
   remainder and ``1/w_r`` separately; it is valid but loose by the factor ``e^beta``.
2. Output error, exactly: ``o^ - o = sum_r w_r delta_r (v_r - o) / D^`` (``D^`` the
   approximate normaliser), hence for ``eps < 1``::

       ||o^ - o||_inf <= eps pi / (1 - eps pi) * max_r ||v_r - o||_inf
                      <= eps / (1 - eps) * max_r ||v_r - o||_inf  <=  2 eps/(1 - eps) ||V||_inf

   where ``pi = W_P / (W_P + S_X)`` is the exact prefix share of the attention mass (the exact
   input block only helps).
3. Degree: the smallest g with ``eps_g/(1 - eps_g) * spread <= m^{-c}``; for bounded beta it is
   ``Theta(log m / log log m)`` (docs: sufficient whenever ``beta <= (log m)^a``, ``a < 1``).
4. Parameters: NTK-Attention stores ``r d_v + r`` numbers; a key+value prefix of length m
   stores ``2 m d``; break-even ``m = (r d + r) / (2 d)``.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from theory import validation as _v
from theory.prefix_attention import check_attention_args as _check_prefix_args
from theory.prefix_attention import input_block, attention_logits

__all__ = [
    "WEIGHT_ERROR_FORMS",
    "weight_error",
    "output_error_bound",
    "instance_output_bound",
    "instance_stats",
    "prefix_logit_max",
    "scale_to_logit_bound",
    "degree_needed",
    "ntk_parameter_count",
    "prefix_parameter_count",
    "break_even_length",
    "flop_counts",
]

WEIGHT_ERROR_FORMS = ("closed", "exact", "spec")


def _beta(beta) -> float:
    if isinstance(beta, (bool, np.bool_)):
        raise _v.InputError(f"beta must be a finite number >= 0, got {beta!r}")
    try:
        b = float(beta)
    except (TypeError, ValueError):
        raise _v.InputError(f"beta must be a finite number >= 0, got {beta!r}") from None
    if not math.isfinite(b) or b < 0:
        raise _v.InputError(f"beta must be a finite number >= 0, got {beta!r}")
    return b


#: ``log`` of the largest float64: a bound whose logarithm exceeds it is returned as ``inf``.
_LOG_MAX = math.log(np.finfo(np.float64).max)


def _exp_or_inf(log_value: float) -> float:
    return math.inf if log_value > _LOG_MAX else math.exp(log_value)


def _exact_weight_error(beta: float, g: int) -> float:
    """``rho_g(beta) = sum_k beta^{g+1+k} / (g! k! (g+1+k))``, all terms positive (no cancellation),
    summed relative to the largest term so that only the result can overflow (then ``inf``)."""
    if beta == 0.0:
        return 0.0
    log_b = math.log(beta)
    # rho_g >= int_{beta-1}^{beta} e^u u^g / g! du >= e^{beta-1} (beta-1)^g / g!: beyond the float
    # range already (this also keeps the series below ~720 + g terms).
    if beta > 1 and beta - 1 + g * math.log(beta - 1) - math.lgamma(g + 1) > _LOG_MAX:
        return math.inf
    log_pre = (g + 1) * log_b - math.lgamma(g + 1)
    logs, k = [], 0
    while True:
        logs.append(log_pre + k * log_b - math.lgamma(k + 1) - math.log(g + 1 + k))
        top = max(logs)
        if k > beta and logs[-1] <= top + math.log(1e-17):
            break
        k += 1
    return _exp_or_inf(top + math.log(math.fsum(math.exp(v - top) for v in logs)))


def weight_error(beta, g, *, form: str = "closed") -> float:
    """Relative prefix-weight error of the degree-g Taylor kernel for logits ``|z| <= beta``.

    Args:
        beta: bound on the prefix logit magnitude, a finite number >= 0.
        g: Taylor degree, an integer >= 0.
        form: ``'closed'``: ``beta^{g+1} e^beta / (g+1)!`` (derived bound); ``'exact'``: the
            supremum ``rho_g(beta) = int_0^beta e^u u^g / g! du`` (attained at z = -beta);
            ``'spec'``: the spec's looser ``beta^{g+1} e^{2 beta} / (g+1)!``.

    Returns:
        The bound as a Python float (0.0 at ``beta = 0``); ``inf`` when it exceeds the float64
        range (``beta`` beyond about 700: the bound is then vacuous, never an ``OverflowError``).

    Raises:
        InputError: ``beta`` is not a finite number >= 0, ``g`` not an integer >= 0, or
            ``form`` not in ``WEIGHT_ERROR_FORMS``.
    """
    b = _beta(beta)
    g = _v.check_count("g", g, minimum=0)
    if form not in WEIGHT_ERROR_FORMS:
        raise _v.InputError(f"form must be one of {WEIGHT_ERROR_FORMS}, got {form!r}")
    if form == "exact":
        return _exact_weight_error(b, g)
    if b == 0.0:
        return 0.0
    growth = b if form == "closed" else 2.0 * b
    return _exp_or_inf((g + 1) * math.log(b) + growth - math.lgamma(g + 2))


@_v.validate_args(eps="array", spread="array")
def output_error_bound(eps, spread, *, prefix_fraction=1.0):
    """``eps pi / (1 - eps pi) * spread`` (inf where ``eps pi >= 1``); element-wise on arrays.

    Args:
        eps: relative weight error, scalar or array (broadcast with the others), >= 0; ``inf``
            (a :func:`weight_error` beyond the float range) gives ``inf`` where ``pi > 0``, 0 where
            the prefix holds no mass.
        spread: ``max_r ||v_r - o||_inf`` (or ``2 ||V||_inf``), scalar or array, >= 0.
        prefix_fraction: ``pi`` in [0, 1], scalar or array (1 gives the spec's
            ``eps/(1-eps)`` form).

    Returns:
        A float for scalar inputs, else a float64 NumPy array of the broadcast shape.

    Raises:
        InputError: ``eps`` is not numeric, NaN or negative, ``spread`` not numeric, not finite
            or negative, or
            ``prefix_fraction`` lies outside [0, 1] (or is NaN).
    """
    eps, spread, pi = (np.asarray(a, np.float64) for a in (eps, spread, prefix_fraction))
    if np.any(np.isnan(eps)) or np.any(eps < 0):
        raise _v.InputError("eps must be >= 0 (inf allowed), not NaN")
    if np.any(~np.isfinite(spread)) or np.any(spread < 0):
        raise _v.InputError("spread must be finite and >= 0")
    if np.any(~(pi >= 0)) or np.any(pi > 1):
        raise _v.InputError("prefix_fraction must lie in [0, 1]")
    with np.errstate(invalid="ignore"):
        x = np.where(pi == 0, 0.0, eps * pi)  # an infinite eps on a prefix without mass: no error
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(x < 1, x / np.where(x < 1, 1 - x, 1) * spread, np.inf)
    return out if out.ndim else float(out)


def prefix_logit_max(X, P, W_Q, W_K, *, per_row: bool = False):
    """``max_r |<q_i, k_r>| / sqrt(d_k)``: the realised beta, overall or per query row (L,)."""
    X, P, W_Q, W_K = (jnp.asarray(a) for a in (X, P, W_Q, W_K))
    _check_prefix_args(X, P, W_Q, W_K, W_K, None)
    row = _row_logit_max(X, P, W_Q, W_K)
    return row if per_row else jnp.max(row)


@jax.jit
def _row_logit_max(X, P, W_Q, W_K):
    return jnp.max(jnp.abs(attention_logits(X, P, W_Q, W_K)[0]), axis=1)


def scale_to_logit_bound(X, P, W_Q, W_K, *, beta):
    """``(s X, s P)`` with ``s = sqrt(beta / max|z|)``: logits are bilinear, so the largest prefix
    logit magnitude of the scaled pair is exactly ``beta`` (the input block is scaled too)."""
    b = _beta(beta)
    X, P = jnp.asarray(X), jnp.asarray(P)
    z = float(prefix_logit_max(X, P, W_Q, W_K))
    if not z > 0:
        raise _v.InputError("X and P give all-zero prefix logits; they cannot be scaled to beta")
    s = math.sqrt(b / z)
    return X * s, P * s


def instance_output_bound(X, P, W_Q, W_K, W_V, *, g, causal: bool = False, form: str = "closed",
                          refined: bool = False):
    """Per-query bound (L,) on ``|NTKAttn_taylor(g) - PrefixAttn|_inf`` for this instance.

    Row i uses its own ``beta_i = max_r |z_ir|``, ``eps = weight_error(beta_i, g, form=form)``
    and ``spread_i = max_r ||v_r - o_i||_inf`` with ``o_i`` the exact output; ``refined``
    multiplies eps by the exact prefix mass share ``pi_i`` (step 2 of the module docstring).
    """
    X, P, W_Q, W_K, W_V = (jnp.asarray(a) for a in (X, P, W_Q, W_K, W_V))
    g = _v.check_count("g", g, minimum=0)
    if form not in WEIGHT_ERROR_FORMS:
        raise _v.InputError(f"form must be one of {WEIGHT_ERROR_FORMS}, got {form!r}")
    betas, spread, pi = instance_stats(X, P, W_Q, W_K, W_V, causal=causal)
    eps = np.array([weight_error(b, g, form=form) for b in betas])
    pi = np.clip(pi, 0.0, 1.0) if refined else 1.0
    return output_error_bound(eps, spread, prefix_fraction=pi)


def instance_stats(X, P, W_Q, W_K, W_V, *, causal: bool = False):
    """Per query row (NumPy float64, each (L,)): ``beta_i = max_r |z_ir|``, ``spread_i =
    max_r ||v_r - o_i||_inf`` (``o_i`` the exact output) and the prefix mass share ``pi_i``."""
    X, P, W_Q, W_K, W_V = (jnp.asarray(a) for a in (X, P, W_Q, W_K, W_V))
    _check_prefix_args(X, P, W_Q, W_K, W_V, None)
    return tuple(np.asarray(a, np.float64) for a in _instance_stats(X, P, W_Q, W_K, W_V, bool(causal)))


@functools.partial(jax.jit, static_argnames=("causal",))
def _instance_stats(X, P, W_Q, W_K, W_V, causal):
    """Per query row: beta_i = max_r |z_ir|, spread_i = max_r ||v_r - o_i||_inf, prefix share pi_i."""
    z_P, _ = attention_logits(X, P, W_Q, W_K)
    _, _, z_X, V_X = input_block(X, W_Q, W_K, W_V, causal)
    V_P = P @ W_V
    lse_P, lse_X = logsumexp(z_P, axis=1), logsumexp(z_X, axis=1)
    lse = jnp.logaddexp(lse_P, lse_X)
    o = jnp.exp(z_P - lse[:, None]) @ V_P + jnp.exp(z_X - lse[:, None]) @ V_X
    hi, lo = jnp.max(V_P, axis=0), jnp.min(V_P, axis=0)  # max_r |v_rc - o_c| = max(hi_c - o_c, o_c - lo_c)
    spread = jnp.max(jnp.maximum(hi[None, :] - o, o - lo[None, :]), axis=1)
    return jnp.max(jnp.abs(z_P), axis=1), spread, jnp.exp(lse_P - lse)


def degree_needed(m, *, c, beta, spread=1.0, form: str = "closed", g_max: int = 10_000) -> int:
    """Smallest g with ``eps_g(beta)/(1 - eps_g(beta)) * spread <= m^{-c}`` (eps_g < 1).

    Args:
        m: prefix length, an integer >= 1.
        c: target exponent (error ``m^{-c}``), a positive number.
        beta: bound on the prefix logit magnitude, a finite number >= 0.
        spread: bound on ``max_r ||v_r - o||_inf`` (``2 ||V||_inf`` always works), > 0.
        form: weight-error form, as in :func:`weight_error`.
        g_max: largest degree tried.

    Returns:
        The degree g, a Python int in ``[0, g_max]``.

    Raises:
        InputError: ``m`` is not an integer >= 1, ``c`` or ``spread`` not positive, ``beta``
            not a finite number >= 0, ``form`` unknown, or no g <= ``g_max`` suffices.
    """
    m = _v.check_count("m", m)
    c = _v.check_positive("c", c)
    b = _beta(beta)
    spread = _v.check_positive("spread", spread)
    target = math.exp(-c * math.log(m))
    for g in range(0, int(g_max) + 1):
        eps = weight_error(b, g, form=form)
        if eps < 1 and eps / (1 - eps) * spread <= target:
            return g
    raise _v.InputError(f"no degree g <= {g_max} reaches m^-c = {target:.3g} at beta = {b:g}")


def ntk_parameter_count(r, d_v) -> int:
    """Numbers in an NTK-Attention summary: ``r d_v + r`` (Z and k)."""
    return _v.check_count("r", r) * _v.check_count("d_v", d_v) + int(r)


def prefix_parameter_count(m, d, *, key_value: bool = True) -> int:
    """Numbers in a length-m prefix: ``2 m d`` for separate keys and values, ``m d`` for tied P."""
    return (2 if key_value else 1) * _v.check_count("m", m) * _v.check_count("d", d)


def break_even_length(r, d, *, key_value: bool = True) -> float:
    """Prefix length at which both cost the same: ``(r d + r) / (2 d)`` (``/ d`` when tied)."""
    return ntk_parameter_count(r, d) / ((2 if key_value else 1) * _v.check_count("d", d))


def flop_counts(L, m, d_k, d_v, r) -> dict:
    """Multiply-adds of one forward pass, summary/prefix projections excluded.

    prefix attention: ``L (m + L) (d_k + d_v)`` (logits and weighted values over m + L keys);
    NTK-Attention: ``L L (d_k + d_v) + L r (d_v + 1)`` plus ``L r`` for the features.
    """
    L, m, d_k, d_v, r = (_v.check_count(n, x) for n, x in
                         (("L", L), ("m", m), ("d_k", d_k), ("d_v", d_v), ("r", r)))
    return {"prefix": L * (m + L) * (d_k + d_v), "ntk": L * L * (d_k + d_v) + L * r * (d_v + 2)}
