"""The fixed problem of experiment "reparam" and what is measured of one fit of it.

One attention row (``N = 2`` tokens of dimension ``d = 2``, query token 0) is the MoE of
:mod:`theory.moe.model` with ``L* = 2`` true prompts.  The truth is fixed (module constants, chosen
before any measurement): frozen ``W_Q, W_K, W_V``, reparameterisation ``W1, W2``, shared embeddings
``p'*`` and biases ``b* = 0``.  ``shared_linear``, ``shared_tanh`` and ``prompt`` use ``p'*``
through their own maps; ``nonshared`` uses ``p^K* = W1 p'*``, ``p^V* = W2 p'*``, the same
regression function as ``shared_linear``, so the two differ only in what the estimator may vary.
``gate_scale`` multiplies ``W_Q`` (the range of the gating logits) for sensitivity studies.

:func:`run_rate` is a rate cell: data ``Y = f_{G*}(X) + eps``, the multi-start least-squares fit
(:func:`theory.moe.multistart.fit_multistart`) and its measures (:func:`metrics`): the Voronoi
loss and its per-cell parts, the singleton and merged-cell parameter errors, the merged-cell second
moment, the fit shape, ``||f_hat - f*||_{L2}`` on fresh test inputs, and the optimiser's record.
The grid, the verdict and the registration are :mod:`sims.experiments.reparam`.  The location-error
bins, zero level and weight-share limits of the identifiability modulus are here too, below both
:mod:`sims.experiments.reparam_identifiability` and its verdict, which share them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from theory.moe.fit import regression_l2_error, sample_regression
from theory.moe.model import Reparam, moe_from_attention, prompt_keys_values
from theory.moe.multistart import fit_multistart
from theory.moe.voronoi import atoms, voronoi_loss

__all__ = ["W_Q", "W_K", "W_V", "W1", "W2", "P_STAR", "N_TOKENS", "QUERY", "L_STAR", "ORACLE_METRICS", "problem",
           "metrics", "run_rate", "ZERO", "SHARE", "BIN_EDGES", "RHO"]

# The fixed problem (d = 2, N = 2 tokens, query 0, L* = 2).
W_Q = ((1.2, 0.3), (-0.2, 1.0))
W_K = ((1.0, -0.4), (0.5, 1.1))
W_V = ((1.0, 0.5), (-0.3, 0.8))
W1 = ((1.0, 0.4), (-0.3, 0.9))
W2 = ((0.8, -0.5), (0.6, 1.0))
P_STAR = ((1.0, 0.8), (-0.9, 0.3))
N_TOKENS, QUERY, L_STAR = 2, 0, 2

# The grid of the identifiability modulus (sims.experiments.reparam_identifiability and its verdict).
ZERO = 1e-12  # ||f_G - f*|| <= ZERO ||f*||: equal to rounding (float64)
SHARE = (0.05, 0.95)  # weight limits of the polished set: the split pair's first share (the random search's range)
BIN_EDGES = 10.0 ** np.arange(-4.0, -1.4, 0.5)  # half-decade bins of rho: 1e-4 .. 10^-1.5 (the local regime)
RHO = np.sqrt(BIN_EDGES[:-1] * BIN_EDGES[1:])  # the bins' centres


def problem(structure: str, dtype=jnp.float64, gate_scale: float = 1.0):
    """``(frozen, reparam, true_params)`` of the fixed problem for ``structure``."""
    a = lambda x: jnp.asarray(x, dtype)  # noqa: E731
    frozen = moe_from_attention(gate_scale * a(W_Q), a(W_K), a(W_V), n_tokens=N_TOKENS, query=QUERY)
    reparam = Reparam(a(W1), a(W2))
    b, p = jnp.zeros(L_STAR, dtype), a(P_STAR)
    if structure == "nonshared":
        return frozen, reparam, {"b": b, "pK": p @ reparam.W1.T, "pV": p @ reparam.W2.T}
    return frozen, reparam, {"b": b, "p": p}


def _cell_mean(values, mask):
    return np.asarray(values[mask].mean()) if mask.any() else np.asarray(np.nan)


def _merged_shape(params, truth, structure, vl):
    """``(sum over merged cells of sum_i w_i ||Delta_i||^2, lightest weight in a merged cell)`` (NaN, NaN
    without a merged cell), in the structure's own location space."""
    (w, loc), _ = atoms(params, structure=structure)
    (_, loc_true), _ = atoms(truth, structure=structure)
    w, loc, loc_true = (np.asarray(a) for a in (w, loc, loc_true))
    a = np.asarray(vl.assignment)
    merged = np.asarray(vl.cell_size)[a] > 1
    if not merged.any():
        return np.asarray(np.nan), np.asarray(np.nan)
    sq = np.sum((loc - loc_true[a]) ** 2, axis=1)
    return np.asarray(np.sum((w * sq)[merged])), np.asarray(np.min(w[merged]))


def metrics(params, truth, s, reparam, frozen, X_test, cell) -> dict:
    """Voronoi loss, per-cell errors, merged-cell shape and L2 error of one fitted configuration."""
    vl = jax.device_get(voronoi_loss(params, truth, structure=s, r=cell["r"]))
    l2 = regression_l2_error(frozen, params, truth, structure=s, X=X_test, reparam=reparam)
    # The same atoms in the common (p^K, p^V) space of every structure: comparable across them.
    kv = lambda p: dict(zip(("b", "pK", "pV"), prompt_keys_values(s, p, reparam)))  # noqa: E731
    vkv = jax.device_get(voronoi_loss(kv(params), kv(truth), structure="nonshared", r=cell["r"]))
    size, perr = np.asarray(vl.cell_size), np.asarray(vl.param_error)
    m2, w_min = _merged_shape(params, truth, s, vl)
    kv_m2, _ = _merged_shape(kv(params), kv(truth), "nonshared", vkv)
    locs = np.concatenate([np.abs(np.asarray(v)).ravel() for k, v in params.items() if k != "b"])
    return {
        "voronoi": np.asarray(vl.total),
        "weight_error": np.asarray(vl.weight_error),
        "location_error": np.asarray(vl.location_error),
        "cell_size": size,
        "param_error": perr,
        "singleton_error": _cell_mean(perr, size == 1),
        "merged_error": _cell_mean(perr, size > 1),
        "merged_m2": m2,
        "extra_weight": w_min,
        "at_edge": np.asarray(float(np.any(locs >= cell["bound"] * (1 - 1e-9)))),
        "kv_voronoi": np.asarray(vkv.total),
        "kv_merged_error": _cell_mean(np.asarray(vkv.param_error), np.asarray(vkv.cell_size) > 1),
        "kv_merged_m2": kv_m2,
        "l2_error": np.asarray(l2),
    }


ORACLE_METRICS = ("voronoi", "singleton_error", "merged_error", "merged_m2", "l2_error")


def run_rate(cell, *, key) -> dict:
    """One rate cell of experiment "reparam": sample the data, fit it (multi-start least squares),
    and measure the fit and the diagnostic start near the truth (module docstring)."""
    dtype = jnp.dtype(cell.get("dtype", "float64"))
    s = cell["structure"]
    frozen, reparam, truth = problem(s, dtype, cell["gate_scale"])
    k_data, k_fit, k_test = jax.random.split(key, 3)
    X, Y = sample_regression(frozen, truth, structure=s, reparam=reparam, key=k_data, n=cell["n"], noise=cell["noise"])
    splits = cell["split_starts"]
    jitters = ((cell["jitter"],) + (cell["wide_jitter"],) * (splits - 1)) if splits else ()
    fit = fit_multistart(X, Y, frozen, structure=s, L=cell["L"], key=k_fit, reparam=reparam, split_jitters=jitters,
                         random_starts=cell["random_starts"], oracle=truth if cell["oracle_start"] else None,
                         oracle_jitter=cell["jitter"], basin_tol=cell["basin_tol"], adam_steps=cell["adam_steps"],
                         polish_steps=cell["polish_steps"], bound=cell["bound"], resolution=cell["resolution"])
    X_test = jax.random.uniform(k_test, (cell["n_test"], X.shape[1]), dtype, -1.0, 1.0)
    out = metrics(fit.params, truth, s, reparam, frozen, X_test, cell)
    if fit.oracle_params is not None:  # the diagnostic start's own fit, judged by the same measures
        oracle = metrics(fit.oracle_params, truth, s, reparam, frozen, X_test, cell)
        out.update({f"oracle_{k}": oracle[k] for k in ORACLE_METRICS})
    stop = fit.predicted_decrease / fit.unit
    return {
        **out,
        "train_loss": np.asarray(fit.loss),
        "grad_norm": np.asarray(fit.grad_norm),
        "iterations": np.asarray(fit.iterations),
        "stop_ratio": np.asarray(stop),
        "converged": np.asarray(float(stop <= cell["resolution"] and fit.iterations < cell["polish_steps"])),
        "start_losses": np.asarray(fit.start_losses),
        "start_family": np.asarray(fit.start_family),
        "start_gaps": np.asarray(fit.gaps),
        "start_iterations": np.asarray(fit.start_iterations),
        "n_best": np.asarray(fit.n_best),
        "oracle_gap": np.asarray(fit.oracle_gap),
        "pilot_loss": np.asarray(fit.pilot_loss),
        **{f"fit_{k}": np.asarray(v) for k, v in fit.params.items()},
    }
