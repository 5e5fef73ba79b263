"""The identifiability modulus of the prefix MoE near an over-specified truth (paper 2, spec section 5).

The inverse bound behind paper 2's rates is a statement about functions, not samples: for
configurations ``G`` with ``L* + 1`` atoms near the truth ``G*`` (``L*`` atoms),

    modulus(G) = || f_G - f_{G*} ||_{L2(mu)}  /  D(G, G*),

with ``D`` the Voronoi loss of :mod:`theory.moe.voronoi`, stays bounded below as ``G -> G*`` for
the shared structures and does not for the non-shared one.  Least squares estimates ``f_G`` at
``n^{-1/2}``, so a lower bound ``modulus >= c > 0`` turns into ``D = O_P(n^{-1/2})`` (merged
atoms at ``n^{-1/4}``, since merged cells carry ``||Delta||^2``), while a modulus that reaches 0
lets configurations at Voronoi distance ``O(1)`` fit as well as the truth.

Non-shared prompts have an exactly flat direction: two atoms with the *same* key and values
``v* +- t e`` (equal weights) give ``f_G = f_{G*}`` exactly while ``D`` is of order ``t``
(the "equal-key manifold").  Shared prompts have none: ``p^K = W1 p'`` with ``W1`` injective
forces equal keys to mean equal atoms.

Configurations are built by splitting true atom ``atom`` into two atoms at ``theta* + delta1``
(weight ``frac * w*``) and ``theta* + delta2`` (weight ``(1 - frac) * w*``); the other atoms may
be moved (``others``) and every bias shifted (``db``).  Locations are those of
:func:`theory.moe.voronoi.atoms`: ``(p^K, p^V)`` in ``R^{2d}`` for ``nonshared``, ``p'`` (or ``p``)
for the shared structures.  ``L2(mu)`` is estimated on caller-supplied inputs ``X`` (draws from
``mu``).  Everything here is batched over configurations (leading axis ``B``) and traceable
after validation.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from theory import validation as _v
from theory.moe.model import (
    SHARED_STRUCTURES,
    MoEFrozen,
    Reparam,
    features_from_arrays,
    check_params,
    check_structure,
    prompt_keys_values,
    regression_from_features,
)
from theory.moe.voronoi import voronoi_unchecked

__all__ = ["Modulus", "location_width", "split_configurations", "random_configurations", "modulus"]


class Modulus(NamedTuple):
    """Per configuration (arrays (B,)): ``distance = ||f_G - f*||_{L2(mu)}``, ``voronoi = D(G, G*)``,
    ``location_error`` (largest per-cell weighted RMS distance of atoms to their true atom),
    ``ratio = distance / voronoi``; ``f_norm = ||f*||_{L2(mu)}`` (scalar, the scale of rounding)."""

    distance: jax.Array
    voronoi: jax.Array
    location_error: jax.Array
    ratio: jax.Array
    f_norm: jax.Array


def location_width(structure: str, *, d: int, reparam: Reparam | None = None) -> int:
    """Dimension ``q`` of an atom's location: ``2 d`` (nonshared), ``d'`` (shared linear/tanh), ``d`` (prompt).

    Args:
        structure: one of ``STRUCTURES``; d: embedding dimension (not checked);
        reparam: :class:`Reparam` ``W1, W2`` (d, d'), required for shared_linear/shared_tanh.
    Returns:
        ``q``, a Python int.
    Raises:
        InputError: unknown ``structure``, or ``reparam`` missing (or ``W1`` not 2-D) for a
            shared_linear/shared_tanh structure.
    """
    check_structure(structure)
    if structure == "nonshared":
        return 2 * d
    if structure == "prompt":
        return d
    if reparam is None or np.ndim(reparam.W1) != 2:
        raise _v.InputError(f"reparam (W1, W2 of shape (d, d')) is required for structure {structure!r}")
    return int(np.shape(reparam.W1)[1])


def _theta(structure, params):
    if structure == "nonshared":
        return jnp.concatenate([params["pK"], params["pV"]], axis=-1)
    return params["p"]


def _params(structure, b, theta, d):
    if structure == "nonshared":
        return {"b": b, "pK": theta[..., :d], "pV": theta[..., d:]}
    return {"b": b, "p": theta}


def split_configurations(truth, *, structure: str, atom: int, delta1, delta2, frac, others=None, db=None,
                         d: int):
    """Batched over-specified configurations: true atom ``atom`` split in two (module docstring).

    Args:
        truth: prompt parameters of ``G*`` (``L*`` atoms, unbatched).
        atom: index of the true atom that is split.
        delta1, delta2: (B, q) location offsets of the two atoms from ``theta*_atom``.
        frac: (B,) in (0, 1), the first atom's share of the weight ``exp(b*_atom)``.
        others: optional (B, L*, q) offsets of every true atom (the entry of ``atom`` is ignored).
        db: optional (B, L* + 1) shifts of the biases (the two split atoms are the last two).
        d: embedding dimension (splits the non-shared location into key and value).
    Returns:
        A parameter dict with leading axis B and ``L* + 1`` atoms: the other true atoms in their
        order, then the two split atoms.
    Raises:
        InputError: bad shapes, ``atom`` out of range, ``frac`` outside (0, 1), non-finite input.
    """
    check_structure(structure)
    d = _v.check_count("d", d)
    want = ("b", "pK", "pV") if structure == "nonshared" else ("b", "p")
    if not isinstance(truth, dict) or set(truth) != set(want):
        raise _v.InputError(f"truth for structure {structure!r} must be a dict with keys {want}")
    L_star = int(np.shape(truth["b"])[0]) if np.ndim(truth["b"]) == 1 else 0
    if L_star < 1 or any(np.ndim(truth[k]) != 2 or np.shape(truth[k])[0] != L_star for k in want[1:]):
        raise _v.InputError(f"truth must hold L* >= 1 biases and (L*, q) locations, got "
                            f"{ {k: np.shape(v) for k, v in truth.items()} }")
    if structure in ("nonshared", "prompt") and any(np.shape(truth[k])[1] != d for k in want[1:]):
        raise _v.InputError(f"truth locations of {structure!r} must have d = {d} columns")
    _v.check_finite("truth", truth)
    atom = _v.check_count("atom", atom, minimum=0)
    if atom >= L_star:
        raise _v.InputError(f"atom must be < L* = {L_star}, got {atom}")
    theta = _theta(structure, {k: jnp.asarray(v) for k, v in truth.items()})
    q = theta.shape[1]
    delta1, delta2, frac = jnp.asarray(delta1), jnp.asarray(delta2), jnp.asarray(frac)
    _v.check_matrix("delta1", delta1, cols=q)
    B = delta1.shape[0]
    if delta2.shape != delta1.shape:
        raise _v.InputError(f"delta2 must have shape {delta1.shape} like delta1, got {delta2.shape}")
    if frac.shape != (B,):
        raise _v.InputError(f"frac must have shape ({B},), got {frac.shape}")
    _v.check_finite("delta", (delta1, delta2, frac))
    f = _v.concrete(frac)
    if f is not None and not np.all((f > 0) & (f < 1)):
        raise _v.InputError("frac must lie in (0, 1)")
    if others is not None and np.shape(others) != (B, L_star, q):
        raise _v.InputError(f"others must have shape ({B}, {L_star}, {q}), got {np.shape(others)}")
    if db is not None and np.shape(db) != (B, L_star + 1):
        raise _v.InputError(f"db must have shape ({B}, {L_star + 1}), got {np.shape(db)}")
    keep = np.array([j for j in range(L_star) if j != atom], dtype=int)
    th = jnp.broadcast_to(theta, (B,) + theta.shape)
    if others is not None:
        th = th + jnp.asarray(others)
    b_true = jnp.asarray(truth["b"])
    b_split = b_true[atom] + jnp.stack([jnp.log(frac), jnp.log1p(-frac)], axis=1)  # (B, 2)
    b = jnp.concatenate([jnp.broadcast_to(b_true[keep], (B, keep.size)), b_split], axis=1)
    if db is not None:
        b = b + jnp.asarray(db)
    loc = jnp.concatenate([th[:, keep], (theta[atom] + delta1)[:, None], (theta[atom] + delta2)[:, None]], axis=1)
    return _params(structure, b, loc, d)


def random_configurations(truth, *, structure: str, key, count: int, rho_min: float, rho_max: float, d: int,
                          atom: int = 0):
    """``count`` random over-specified configurations near ``G*`` (the random search of the modulus).

    Scale ``rho`` log-uniform in ``[rho_min, rho_max]``; weight share ``frac ~ U(0.05, 0.95)``;
    ``delta1 = rho u1``, ``delta2 = -frac/(1 - frac) delta1 + 2 rho^2 s u2`` (first moment matched
    up to ``O(rho^2)``, ``s ~ U(0, 1)^2``); the other atoms moved by ``rho^2 N(0, I)/4`` and the
    biases by ``rho^2 N(0, 1)/4`` (``u1, u2`` uniform unit vectors).  Every perturbation that
    enters ``f_G - f*`` at first order is ``O(rho^2)``, like the merged cell's second moment, so a
    shape drawn from the same key has the same leading-order modulus at every ``rho`` (a first-order
    ``O(rho)`` remainder would only give ratios ``~ 1/rho``, never the infimum).

    Args:
        truth: prompt parameters of ``G*`` (``L*`` atoms, unbatched); structure: one of ``STRUCTURES``.
        key: JAX PRNG key; count: number B of configurations (integer >= 1).
        rho_min, rho_max: range of the scale ``rho``, 0 < rho_min <= rho_max.
        d: embedding dimension; atom: index of the true atom that is split.
    Returns:
        The dict of :func:`split_configurations`: leading axis ``count`` and ``L* + 1`` atoms.
    Raises:
        InputError: ``count`` not an integer >= 1, ``rho_min``/``rho_max`` not positive or
            ``rho_min > rho_max``, and what :func:`split_configurations` refuses.
    """
    count = _v.check_count("count", count)
    rho_min, rho_max = _v.check_positive("rho_min", rho_min), _v.check_positive("rho_max", rho_max)
    if rho_min > rho_max:
        raise _v.InputError(f"rho_min must be <= rho_max, got {rho_min} > {rho_max}")
    L_star = int(np.shape(truth["b"])[0])
    q = 2 * d if structure == "nonshared" else int(np.shape(truth["p"])[1])
    dt = jnp.asarray(truth["b"]).dtype
    k = jax.random.split(key, 7)
    rho = jnp.exp(jax.random.uniform(k[0], (count,), dt, np.log(rho_min), np.log(rho_max)))
    unit = lambda kk: (lambda z: z / jnp.linalg.norm(z, axis=1, keepdims=True))(  # noqa: E731
        jax.random.normal(kk, (count, q), dt))
    frac = jax.random.uniform(k[1], (count,), dt, 0.05, 0.95)
    s = jax.random.uniform(k[2], (count, 1), dt) ** 2
    d1 = rho[:, None] * unit(k[3])
    d2 = -(frac / (1 - frac))[:, None] * d1 + 2 * rho[:, None] ** 2 * s * unit(k[4])
    others = 0.25 * rho[:, None, None] ** 2 * jax.random.normal(k[5], (count, L_star, q), dt)
    db = 0.25 * rho[:, None] ** 2 * jax.random.normal(k[6], (count, L_star + 1), dt)
    return split_configurations(truth, structure=structure, atom=atom, delta1=d1, delta2=d2, frac=frac,
                                others=others, db=db, d=d)


@functools.partial(jax.jit, static_argnames=("structure", "parts", "shared"))
def _modulus(features, C, configs, truth, reparam, r, structure, parts, shared):
    f_true = regression_from_features(features, C, *prompt_keys_values(structure, truth, reparam))
    w_true, loc_true = jnp.exp(truth["b"]), _theta(structure, truth)

    def one(p):
        f = regression_from_features(features, C, *prompt_keys_values(structure, p, reparam))
        dist = jnp.sqrt(jnp.mean(jnp.sum((f - f_true) ** 2, axis=1)))
        vl = voronoi_unchecked(jnp.exp(p["b"]), _theta(structure, p), w_true, loc_true, r, parts, shared)
        loc = jnp.max(jnp.where(jnp.isnan(vl.param_error), 0.0, vl.param_error))
        return dist, vl.total, loc

    dist, D, loc = jax.lax.map(one, configs, batch_size=64)
    f_norm = jnp.sqrt(jnp.mean(jnp.sum(f_true ** 2, axis=1)))
    return Modulus(dist, D, loc, dist / D, f_norm)


def modulus(frozen: MoEFrozen, truth, configs, *, structure: str, X, reparam: Reparam | None = None,
            r: float = 2.0) -> Modulus:
    """The modulus ``||f_G - f*||_{L2(mu)} / D(G, G*)`` of a batch of configurations.

    Args:
        frozen: the fixed MoE matrices.
        truth: prompt parameters of ``G*`` (unbatched).
        configs: prompt parameters with a leading batch axis B (e.g. :func:`split_configurations`).
        X: (n, N d) inputs drawn from ``mu``; the L2 norm is their empirical mean.
        r: power of the non-shared Voronoi loss (default 2, the power of merged shared cells, so
            the structures are compared with the same loss; ignored for shared structures).
    Returns:
        :class:`Modulus` with arrays of shape (B,).
    Raises:
        InputError: bad structure, shapes, ``r < 1`` or non-finite input.
    """
    check_structure(structure)
    d = frozen.B.shape[1]
    check_params(structure, truth, d=d, reparam=reparam, name="truth")
    if not isinstance(configs, dict) or set(configs) != set(truth):
        raise _v.InputError(f"configs must be a dict with keys {tuple(truth)}, got {type(configs).__name__}")
    Bc = np.shape(configs["b"])
    if len(Bc) != 2:
        raise _v.InputError(f"configs['b'] must have shape (B, L), got {Bc}")
    check_params(structure, {k: np.asarray(v)[0] for k, v in configs.items()}, d=d, reparam=reparam, name="configs[0]")
    _v.check_finite("configs", configs)
    X = jnp.asarray(X)
    _v.check_matrix("X", X, cols=frozen.B.shape[0])
    _v.check_finite("X", X)
    r = _v.check_positive("r", r)
    if r < 1:
        raise _v.InputError(f"r must be >= 1, got {r}")
    dt = X.dtype
    fz = MoEFrozen(*(jnp.asarray(a, dt) for a in frozen))
    feats = features_from_arrays(X, fz.A, fz.c, fz.H, fz.B)
    cast = lambda p: {k: jnp.asarray(v, dt) for k, v in p.items()}  # noqa: E731
    rp = None if reparam is None else Reparam(*(jnp.asarray(a, dt) for a in reparam))
    parts = (d, d) if structure == "nonshared" else (int(np.shape(truth["p"])[1]),)
    return _modulus(feats, fz.C, cast(configs), cast(truth), rp, jnp.asarray(r, dt), structure, parts,
                    structure in SHARED_STRUCTURES)
