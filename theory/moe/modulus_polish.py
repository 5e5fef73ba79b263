"""The identifiability modulus minimised: local minimisation from a search's best configurations.

:func:`theory.moe.identifiability.modulus` evaluates ``||f_G - f*||_{L2(mu)} / D(G, G*)`` on
given configurations; a search over them gives an upper bound on the infimum, not the infimum.
:func:`polish_modulus` minimises the ratio locally from each start, on an explicit set:

- the layout of :func:`theory.moe.identifiability.split_configurations`: ``L* + 1`` atoms, the
  true atoms other than ``atom`` in their order, then the pair that splits ``atom`` (its cell);
- weight limits: the pair's first atom holds a share ``s = w_a / (w_a + w_b)`` in ``share``
  (default ``[0.05, 0.95]``, the random search's range); the cells' masses are free;
- the local set (``rho = (lo, hi)``): every cell's weighted RMS location error (``param_error``
  of :mod:`theory.moe.voronoi`, computed on the layout's cells) at most ``hi``, the pair's cell's
  at least ``lo``; ``rho=None`` drops it (locations anywhere);
- the masses: each cell's total weight within a factor ``exp(+-hi)`` of the true atom's (the local
  set: ``D`` stays of the order of the bin), ``exp(+-MASS)`` without ``rho``;
- the box (``box``): every location entry in ``[-box, box]``; ``None`` drops it.

Coordinates separate the orders (as :func:`theory.moe.identifiability.random_configurations`
does): with ``rho`` the bin centre ``sqrt(lo hi)`` (1 without ``rho``), the pair sits at
``theta*_a + c + (1 - s) delta`` and ``theta*_a + c - s delta`` (so ``c`` is its first moment
per unit mass) with ``delta ~ rho`` and ``c, `` the cells' log-mass shifts and the other atoms'
offsets ``~ rho^2``; each coordinate is O(1) in its unit, so the ratio's narrow valley (first
order cancelled) is not an ill-conditioned one.  The minimiser is scipy's SLSQP on
``log ||f_G - f*|| - log D`` with exact JAX gradients (the distance floored at ``1e-15 ||f*||``
so the objective stays finite where ``f_G = f*``), in up to ``rounds`` rounds, each restarted
from the best feasible point evaluated so far.  If no feasible point beats the start, the start is
kept (``moved`` False): the reported minimum is never above the search's, and a start the
minimiser could not improve is visible as such.

Pure: arrays in, arrays out; the same starts give the same minima (SLSQP is deterministic).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import minimize

from theory import validation as _v
from theory.moe.identifiability import modulus
from theory.moe.model import (
    SHARED_STRUCTURES,
    MoEFrozen,
    Reparam,
    check_params,
    check_structure,
    features_from_arrays,
    prompt_keys_values,
    regression_from_features,
)
from theory.moe.voronoi import voronoi_unchecked

__all__ = ["Polished", "polish_modulus", "rescale_configuration"]

FEASIBLE = 1e-6  # relative slack on the constraints when a result is checked
LOG_ZERO = float(np.log(1e-9))  # a ratio below 1e-9 is 0 for every purpose: the minimiser stops there
KINK = 1e-3  # offset (in the coordinates' units) that moves a start off a kink of D
MASS = 3.0  # without a local set, each cell's log-mass stays within +-MASS of the truth's


class Polished(NamedTuple):
    """Per start (arrays (B,)): ``ratio`` (the minimised modulus), ``start_ratio``, ``distance``
    (``||f_G - f*||``), ``voronoi`` (``D``), ``merged_error`` (the pair's cell's weighted RMS
    location error), ``location_error`` (largest over cells), ``share`` (the pair's first weight
    share), ``iterations``, ``moved`` (bool: the minimiser's result was kept); ``configs`` the
    minimising configurations (dict, leading axis B)."""

    ratio: np.ndarray
    start_ratio: np.ndarray
    distance: np.ndarray
    voronoi: np.ndarray
    merged_error: np.ndarray
    location_error: np.ndarray
    share: np.ndarray
    iterations: np.ndarray
    moved: np.ndarray
    configs: dict


def _theta(structure, p):
    return jnp.concatenate([p["pK"], p["pV"]], axis=-1) if structure == "nonshared" else p["p"]


def _params(structure, b, loc, d):
    return {"b": b, "pK": loc[..., :d], "pV": loc[..., d:]} if structure == "nonshared" else {"b": b, "p": loc}


def _config(u, cell_of, b_true, theta_true, scale):
    """``(b, locations)`` in the layout from the coordinates ``u`` (module docstring):
    ``u = [logit s, delta/rho (q), c/rho^2 (q), mass shifts/rho^2 (L*, layout order), offsets/rho^2 ((L*-1) q)]``."""
    Ls, q = theta_true.shape
    keep, a = cell_of[:-2], cell_of[-1]
    s = jax.nn.sigmoid(u[0])
    delta, c = scale * u[1:1 + q], scale ** 2 * u[1 + q:1 + 2 * q]
    m = scale ** 2 * u[1 + 2 * q:1 + 2 * q + Ls]
    e = scale ** 2 * u[1 + 2 * q + Ls:].reshape(Ls - 1, q)
    mass = b_true[a] + m[-1]
    b = jnp.concatenate([b_true[keep] + m[:-1], jnp.stack([mass + jnp.log(s), mass + jnp.log1p(-s)])])
    pair = jnp.stack([theta_true[a] + c + (1 - s) * delta, theta_true[a] + c - s * delta])
    return b, jnp.concatenate([theta_true[keep] + e, pair])


def _coordinates(b, loc, cell_of, b_true, theta_true, scale):
    """Inverse of :func:`_config` (numpy): the coordinates of a configuration in the layout."""
    keep, a = cell_of[:-2], cell_of[-1]
    w = np.exp(b[-2:])
    s, mass = w[0] / w.sum(), np.log(w.sum())
    da, db = loc[-2] - theta_true[a], loc[-1] - theta_true[a]
    c = s * da + (1 - s) * db
    m = np.r_[b[:-2] - b_true[keep], mass - b_true[a]]
    return np.r_[np.log(s) - np.log1p(-s), (da - db) / scale, c / scale ** 2, m / scale ** 2,
                 (loc[:-2] - theta_true[keep]).ravel() / scale ** 2]


def _voronoi(b, loc, truth, r, structure, parts, shared):
    return voronoi_unchecked(jnp.exp(b), loc, jnp.exp(truth["b"]), _theta(structure, truth), r, parts, shared)


_STATIC = ("structure", "parts", "shared", "d")


@functools.partial(jax.jit, static_argnames=_STATIC)
@functools.partial(jax.value_and_grad)
def _value_grad(u, cell_of, scale, feats, C, truth, reparam, r, structure, parts, shared, d):
    """``log ||f_G - f*|| - log D`` (distance floored at ``1e-15 ||f*||``) and its gradient in ``u``."""
    b, loc = _config(u, cell_of, truth["b"], _theta(structure, truth), scale)
    f_true = regression_from_features(feats, C, *prompt_keys_values(structure, truth, reparam))
    f = regression_from_features(feats, C, *prompt_keys_values(structure, _params(structure, b, loc, d), reparam))
    dist2 = jnp.mean(jnp.sum((f - f_true) ** 2, axis=1))
    floor2 = 1e-30 * jnp.mean(jnp.sum(f_true ** 2, axis=1))
    return 0.5 * jnp.log(dist2 + floor2) - jnp.log(_voronoi(b, loc, truth, r, structure, parts, shared).total)


def _constraints(u, lo, hi, box, cell_of, b_true, theta_true, scale, local, boxed):
    """Inequalities ``>= 0`` (smooth): every cell's squared weighted RMS location error <= hi^2,
    the pair's >= lo^2 (``local``); every location entry in ``[-box, box]`` (``boxed``)."""
    Ls, q = theta_true.shape
    b, loc = _config(u, cell_of, b_true, theta_true, scale)
    s = jax.nn.sigmoid(u[0])
    delta, c = scale * u[1:1 + q], scale ** 2 * u[1 + q:1 + 2 * q]
    e = scale ** 2 * u[1 + 2 * q + Ls:].reshape(Ls - 1, q)
    err2 = jnp.concatenate([jnp.sum(e ** 2, axis=1), jnp.atleast_1d(jnp.sum(c ** 2) + s * (1 - s) * jnp.sum(delta ** 2))])
    out = [jnp.zeros(0, u.dtype)]
    if local:
        out += [1.0 - err2 / hi ** 2, err2[-1:] / lo ** 2 - 1.0]
    if boxed:
        out += [(box - loc).ravel(), (box + loc).ravel()]
    return jnp.concatenate(out)


_cons = jax.jit(_constraints, static_argnames=("local", "boxed"))
_cons_jac = jax.jit(jax.jacfwd(_constraints), static_argnames=("local", "boxed"))


def _logit(p):
    return float(np.log(p) - np.log1p(-p))


def _stop(best):
    def callback(*_):
        if best["value"] < LOG_ZERO:  # 0 for every purpose: no need to chase the rounding floor
            raise StopIteration
    return callback


def _slsqp(u0, kw, ckw, bounds, max_iter, rounds):
    """SLSQP from ``u0`` in up to ``rounds`` rounds, each restarted from the best feasible point
    evaluated so far (SLSQP may stop on incompatible linearised constraints); returns
    ``(u, value, iterations)`` of the best feasible point, or ``(None, inf, iterations)``."""
    lb, ub = (np.array(v) for v in zip(*bounds))
    best = {"u": None, "value": np.inf}

    def feasible(u):
        return (np.all(np.isfinite(u)) and np.all(np.asarray(_cons(jnp.asarray(u), **ckw)) >= -FEASIBLE)
                and np.all(u >= lb - FEASIBLE) and np.all(u <= ub + FEASIBLE))

    def fun(u):
        value, grad = (np.nan_to_num(np.asarray(v, float)) for v in _value_grad(jnp.asarray(u), **kw))
        if value < best["value"] and feasible(u):
            best.update(u=np.array(u, float), value=float(value))
        return float(value), grad

    cons = [{"type": "ineq", "fun": lambda u: np.asarray(_cons(jnp.asarray(u), **ckw)),
             "jac": lambda u: np.nan_to_num(np.asarray(_cons_jac(jnp.asarray(u), **ckw)))}]
    if not (ckw["local"] or ckw["boxed"]):
        cons = []
    its, start = 0, u0
    for _ in range(rounds):
        before = best["value"]
        res = minimize(fun, start, jac=True, method="SLSQP", bounds=bounds, constraints=cons, callback=_stop(best),
                       options={"maxiter": max_iter, "ftol": 1e-13})
        fun(res.x)
        its += int(res.nit)
        if best["u"] is None or not best["value"] < before - 1e-9 or best["value"] < LOG_ZERO:
            break
        start = best["u"]
    return best["u"], best["value"], its


def polish_modulus(frozen: MoEFrozen, truth, starts, *, structure: str, X, atom, reparam: Reparam | None = None,
                   rho: tuple[float, float] | None = None, share: tuple[float, float] = (0.05, 0.95),
                   box: float | None = None, r: float = 2.0, max_iter: int = 300, rounds: int = 3) -> Polished:
    """Minimise the modulus locally from each start, on the set of the module docstring.

    Args:
        frozen: the fixed MoE matrices; truth: prompt parameters of ``G*`` (``L*`` atoms).
        starts: batched configurations (leading axis B, ``L* + 1`` atoms) in the layout of
            :func:`theory.moe.identifiability.split_configurations` for true atom ``atom``.
        X: (n, N d) inputs drawn from ``mu`` (the L2 norm is their mean).
        atom: index of the split true atom, an int or (B,) ints (one per start).
        rho: ``(lo, hi)`` bounds of the location errors (local set), 0 < lo < hi; None: no bound.
        share: limits of the pair's first weight share, 0 < share[0] < share[1] < 1.
        box: half-width of the box of locations (> 0), or None.
        r: power of the non-shared Voronoi loss (as in :func:`modulus`).
        max_iter: SLSQP iterations per round; rounds: restarts from the best feasible point.
    Returns:
        :class:`Polished` (numpy arrays of shape (B,)).
    Raises:
        InputError: bad structure, shapes, atom, rho, share, box, or non-finite input.
    """
    check_structure(structure)
    d = frozen.B.shape[1]
    Ls = check_params(structure, truth, d=d, reparam=reparam, name="truth")
    start = modulus(frozen, truth, starts, structure=structure, X=X, reparam=reparam, r=r)  # validates the rest
    B = int(np.shape(starts["b"])[0])
    if np.shape(starts["b"])[1] != Ls + 1:
        raise _v.InputError(f"starts must hold L* + 1 = {Ls + 1} atoms, got {np.shape(starts['b'])[1]}")
    atoms = np.broadcast_to(np.asarray(atom), (B,))
    if not np.issubdtype(atoms.dtype, np.integer) or np.any((atoms < 0) | (atoms >= Ls)):
        raise _v.InputError(f"atom must be integers in [0, {Ls}), got {atom}")
    lo = hi = None
    if rho is not None:
        lo, hi = (_v.check_positive("rho", float(v)) for v in rho)
        if lo >= hi:
            raise _v.InputError(f"rho must be (lo, hi) with lo < hi, got {rho}")
    s_lo, s_hi = (float(v) for v in share)
    if not 0 < s_lo < s_hi < 1:
        raise _v.InputError(f"share must satisfy 0 < share[0] < share[1] < 1, got {share}")
    if box is not None:
        box = _v.check_positive("box", box)
    max_iter, rounds = _v.check_count("max_iter", max_iter), _v.check_count("rounds", rounds)
    dt = jnp.asarray(X).dtype
    fz = MoEFrozen(*(jnp.asarray(a, dt) for a in frozen))
    tr = {k: jnp.asarray(v, dt) for k, v in truth.items()}
    b_true, theta_true = np.asarray(tr["b"]), np.asarray(_theta(structure, tr))
    q = theta_true.shape[1]
    scale = float(np.sqrt(lo * hi)) if rho is not None else 1.0
    kw = {"scale": scale, "feats": features_from_arrays(jnp.asarray(X), fz.A, fz.c, fz.H, fz.B), "C": fz.C,
          "truth": tr, "reparam": None if reparam is None else Reparam(*(jnp.asarray(a, dt) for a in reparam)),
          "r": r, "structure": structure, "parts": (d, d) if structure == "nonshared" else (q,),
          "shared": structure in SHARED_STRUCTURES, "d": d}
    ckw = {"lo": lo or 1.0, "hi": hi or 1.0, "box": box or 1.0, "b_true": jnp.asarray(b_true),
           "theta_true": jnp.asarray(theta_true), "scale": scale, "local": rho is not None, "boxed": box is not None}
    n_u = 1 + 2 * q + Ls + (Ls - 1) * q
    # the cells' masses within a factor exp(+-hi) of the truth's (the local set; exp(+-MASS) without one)
    m_max = (hi if rho is not None else MASS) / scale ** 2
    bounds = ([(_logit(s_lo), _logit(s_hi))] + [(-np.inf, np.inf)] * (2 * q) + [(-m_max, m_max)] * Ls
              + [(-np.inf, np.inf)] * ((Ls - 1) * q))
    b0, loc0 = np.asarray(starts["b"], float), np.asarray(_theta(structure, starts), float)
    out_b, out_loc, its, moved = b0.copy(), loc0.copy(), np.zeros(B, int), np.zeros(B, bool)
    for i in range(B):
        a = int(atoms[i])
        cell_of = np.array([j for j in range(Ls) if j != a] + [a, a])
        kwi, ckwi = {**kw, "cell_of": jnp.asarray(cell_of)}, {**ckw, "cell_of": jnp.asarray(cell_of)}
        u0 = _coordinates(b0[i], loc0[i], cell_of, b_true, theta_true, scale)
        v0 = float(_value_grad(jnp.asarray(u0), **kwi)[0])
        # D has kinks where a cell's mass or a singleton's offset is exactly the truth's (|x|, ||x||), and
        # there the gradient says 0 while the ratio falls both ways: start the minimiser just off them
        u0 = u0 + np.where(np.abs(u0) < KINK, KINK, 0.0) * (np.arange(n_u) >= 1 + 2 * q)
        if v0 < LOG_ZERO:  # already 0 for every purpose
            continue
        u, value, its[i] = _slsqp(u0, kwi, ckwi, bounds, max_iter, rounds)
        if u is not None and value < v0:
            b_i, loc_i = _config(jnp.asarray(u), jnp.asarray(cell_of), jnp.asarray(b_true), jnp.asarray(theta_true),
                                 scale)
            out_b[i], out_loc[i], moved[i] = np.asarray(b_i), np.asarray(loc_i), True
    configs = _params(structure, jnp.asarray(out_b), jnp.asarray(out_loc), d)
    m = modulus(frozen, truth, configs, structure=structure, X=X, reparam=reparam, r=r)
    w = np.exp(out_b)
    merged = np.array([_pair_error(out_loc[i], w[i], theta_true[int(atoms[i])]) for i in range(B)])
    return Polished(np.asarray(m.ratio), np.asarray(start.ratio), np.asarray(m.distance), np.asarray(m.voronoi),
                    merged, np.asarray(m.location_error), w[:, -2] / (w[:, -2] + w[:, -1]), its, moved,
                    {k: np.asarray(v) for k, v in configs.items()})


def rescale_configuration(config, truth, *, structure: str, atom: int, factor: float):
    """The same shape at ``factor`` times the scale: the pair's separation times ``factor``, its
    first moment, the masses' shifts and the other atoms' offsets times ``factor^2`` (the
    coordinates of the module docstring, read at scale ``factor`` instead of 1).  Unbatched
    (one configuration in the layout of :func:`theory.moe.identifiability.split_configurations`).

    Raises:
        InputError: bad structure, ``atom`` out of range or ``factor`` not positive.
    """
    check_structure(structure)
    factor = _v.check_positive("factor", factor)
    b_true, theta_true = np.asarray(truth["b"], float), np.asarray(_theta(structure, truth), float)
    Ls = b_true.shape[0]
    if not 0 <= int(atom) < Ls:
        raise _v.InputError(f"atom must be in [0, {Ls}), got {atom}")
    cell_of = np.array([j for j in range(Ls) if j != int(atom)] + [int(atom)] * 2)
    u = _coordinates(np.asarray(config["b"], float), np.asarray(_theta(structure, config), float), cell_of, b_true,
                     theta_true, 1.0)
    b, loc = _config(jnp.asarray(u), jnp.asarray(cell_of), jnp.asarray(b_true), jnp.asarray(theta_true), factor)
    return {k: np.asarray(v) for k, v in _params(structure, b, loc, theta_true.shape[1] // 2 if structure ==
                                                 "nonshared" else 0).items()}


def _pair_error(loc, w, theta):
    """Weighted RMS distance of the pair (the last two atoms) to its true atom."""
    sq = np.sum((loc[-2:] - theta) ** 2, axis=1)
    return float(np.sqrt(np.sum(w[-2:] * sq) / np.sum(w[-2:])))
