"""The least-squares estimator of the prefix MoE computed from many starts (paper 2, spec 5).

:func:`theory.moe.fit.fit_least_squares` polishes each start to a *local* minimum: in an
over-specified fit (``L > L*`` prompts) different starts stop in different basins, and a start's
local stop is not the least-squares estimator the rate theory is about.  :func:`fit_multistart`
therefore fits several families of starts and keeps the lowest loss; none of them uses the
data-generating prompts:

- ``"split"``: a *pilot* fit with ``L - 1`` prompts (from ``pilot_starts`` random starts, the
  lowest loss kept) has one atom split into two copies of half its weight (start ``k`` splits
  pilot atom ``k mod (L - 1)``), every location jittered by ``N(0, jitter_k^2)``, one start per
  entry of ``split_jitters`` (a small jitter explores the pilot's basin, a wide one its
  neighbours);
- ``"random"``: ``random_starts`` random configurations (:func:`theory.moe.fit.init_params`,
  ``method="random"``, locations ``N(0, scale^2)``).

``oracle`` (the data-generating prompts, for a diagnostic only) adds one more start: the true
atoms, atom 0 split, jittered by ``oracle_jitter``.  It never enters the estimate; its loss is
reported as ``oracle_gap``, how far (in units of ``sigma_hat^2 / n``) the estimator's loss lies
above it: a positive gap means the truth-free starts missed a lower basin.

Per fit the result records every start's loss and its gap to the best,
``gap_k = (loss_k - loss) / (sigma_hat^2 / n)`` with ``sigma_hat^2 = 2 loss / d_v`` (the residual
variance; ``sigma^2 / n`` is the loss's statistical resolution), and ``n_best``, the number of
truth-free starts within ``basin_tol`` of the best (the best itself included).  ``n_best >= 2``
says that the lowest loss was reached independently twice, not found once by luck.

All starts of one call run in one jitted function (:func:`theory.moe.fit.fit_starts`), vmapped
``batch_size`` at a time.  Same key, same numbers.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from theory import validation as _v
from theory.moe.fit import fit_starts, init_params, prepare_problem, stack_starts
from theory.moe.model import MoEFrozen, Reparam, check_params

__all__ = ["FAMILIES", "MultiStartFit", "fit_multistart", "basin_counts"]

FAMILIES = ("split", "random", "oracle")


class MultiStartFit(NamedTuple):
    """The lowest-loss truth-free start and every start's outcome (module docstring).

    ``params``, ``loss``, ``grad_norm``, ``iterations``, ``predicted_decrease``: of the returned
    start.  ``start_losses``, ``start_family`` (index into :data:`FAMILIES`), ``start_jitter``
    (0 for random starts), ``start_iterations``, ``gaps``: per start, the oracle start (if any)
    last.  ``unit``: ``sigma_hat^2 / n``.  ``n_best``: truth-free starts within ``basin_tol``.
    ``pilot_loss``: the ``L - 1`` pilot's loss (NaN without split starts).  ``oracle_params``,
    ``oracle_gap``: the oracle start's fit and ``(loss - oracle loss) / unit`` (None and NaN
    without ``oracle``)."""

    params: dict
    loss: float
    grad_norm: float
    iterations: int
    predicted_decrease: float
    start_losses: np.ndarray
    start_family: np.ndarray
    start_jitter: np.ndarray
    start_iterations: np.ndarray
    gaps: np.ndarray
    unit: float
    n_best: int
    pilot_loss: float
    oracle_params: dict | None
    oracle_gap: float


def basin_counts(losses, best, unit, tol):
    """``(gaps, n_within)``: ``(losses - best) / unit`` and how many gaps are ``<= tol``."""
    gaps = (np.asarray(losses, float) - float(best)) / float(unit)
    return gaps, int(np.sum(gaps <= tol))


def fit_multistart(X, Y, frozen: MoEFrozen, *, structure: str, L: int, key, reparam: Reparam | None = None,
                   split_jitters=(0.1, 0.5, 0.5, 0.5), random_starts: int = 4, scale: float = 1.0,
                   pilot_starts: int = 4, oracle=None, oracle_jitter: float = 0.1, basin_tol: float = 0.1,
                   batch_size: int | None = None, **options) -> MultiStartFit:
    """Least squares over ``L`` prompts of ``structure`` from the starts of the module docstring.

    Args:
        X, Y, frozen, structure, L, reparam: as :func:`theory.moe.fit.fit_least_squares`.
        key: PRNG key (pilot, splits and random starts get independent subkeys).
        split_jitters: one split start per entry (needs ``L >= 2``; ignored for ``L = 1``).
        random_starts, scale: random starts and their location scale.
        pilot_starts: random starts of the ``L - 1`` pilot.
        oracle, oracle_jitter: the data-generating prompts for the diagnostic start (optional).
        basin_tol: gap (units of ``sigma_hat^2 / n``) within which a start counts as reaching the best.
        batch_size: starts vmapped together (None: one after the other).
        **options: the optimiser's options of :func:`theory.moe.fit.fit_least_squares`
            (``adam_steps``, ``polish``, ``polish_steps``, ``learning_rate``, ``ftol``, ``bound``,
            ``resolution``).

    Returns:
        :class:`MultiStartFit`.

    Raises:
        InputError: bad data or options (named), no truth-free start at all.
    """
    prob = prepare_problem(X, Y, frozen, structure=structure, reparam=reparam, **options)
    L = _v.check_count("L", L)
    random_starts = _v.check_count("random_starts", random_starts, minimum=0)
    pilot_starts = _v.check_count("pilot_starts", pilot_starts)
    basin_tol = _v.check_positive("basin_tol", basin_tol)
    jitters = [_v.check_positive("split_jitters", j) for j in split_jitters] if L >= 2 else []
    if not jitters and not random_starts:
        raise _v.InputError("at least one truth-free start is needed: give split_jitters (L >= 2) or random_starts")
    if batch_size is not None:
        batch_size = _v.check_count("batch_size", batch_size)
    k_pilot, k_split, k_random, k_oracle = jax.random.split(key, 4)
    kw = dict(d=prob.d, reparam=prob.reparam, dtype=prob.dtype)

    def lowest(inits):
        params, losses, gnorms, its, preds = jax.device_get(fit_starts(prob, stack_starts(inits),
                                                                       batch_size=batch_size))
        return params, np.asarray(losses), np.asarray(gnorms), np.asarray(its), np.asarray(preds)

    starts, family, jit = [], [], []
    pilot_loss = np.nan
    if jitters:
        pp, pl, *_ = lowest([init_params(structure, L - 1, key=k, method="random", scale=scale, **kw)
                             for k in jax.random.split(k_pilot, pilot_starts)])
        b = int(np.argmin(pl))
        pilot, pilot_loss = {k: v[b] for k, v in pp.items()}, float(pl[b])
        for i, (k, j) in enumerate(zip(jax.random.split(k_split, len(jitters)), jitters)):
            starts.append(init_params(structure, L, key=k, method="split", true_params=pilot, jitter=j,
                                      split_atom=i, **kw))
            family.append(0), jit.append(j)
    for k in jax.random.split(k_random, random_starts) if random_starts else []:
        starts.append(init_params(structure, L, key=k, method="random", scale=scale, **kw))
        family.append(1), jit.append(0.0)
    if oracle is not None:
        check_params(structure, oracle, d=prob.d, reparam=prob.reparam, name="oracle")
        oracle_jitter = _v.check_positive("oracle_jitter", oracle_jitter)
        starts.append(init_params(structure, L, key=k_oracle, method="split", true_params=oracle,
                                  jitter=oracle_jitter, split_atom=0, **kw))
        family.append(2), jit.append(oracle_jitter)
    params, losses, gnorms, its, preds = lowest(starts)
    family = np.asarray(family)
    free = np.flatnonzero(family != 2)
    best = int(free[np.argmin(losses[free])])
    unit = 2.0 * float(losses[best]) / (prob.Y.shape[1] * prob.Y.shape[0])
    unit = unit if unit > 0 else float(np.finfo(np.float64).tiny)
    gaps = basin_counts(losses, losses[best], unit, basin_tol)[0]
    n_best = basin_counts(losses[free], losses[best], unit, basin_tol)[1]
    has_oracle = oracle is not None
    return MultiStartFit(
        params={k: jnp.asarray(v[best]) for k, v in params.items()}, loss=float(losses[best]),
        grad_norm=float(gnorms[best]), iterations=int(its[best]), predicted_decrease=float(preds[best]),
        start_losses=losses, start_family=family, start_jitter=np.asarray(jit, float), start_iterations=its,
        gaps=gaps, unit=unit, n_best=n_best, pilot_loss=pilot_loss,
        oracle_params={k: jnp.asarray(v[-1]) for k, v in params.items()} if has_oracle else None,
        oracle_gap=float(-gaps[-1]) if has_oracle else np.nan)
