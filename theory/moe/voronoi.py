"""Voronoi losses between a fitted and a true mixing measure (spec section 5, paper 2).

Atoms.  A prompt configuration with biases ``b`` is the mixing measure
``G = sum_j exp(b_j) delta_{theta_j}``: atom ``j`` has weight ``exp(b_j)`` and location

- ``nonshared``: ``theta_j = (p^K_j, p^V_j) in R^{2d}`` (two parts, key and value);
- ``shared_linear``, ``shared_tanh``: ``theta_j = p'_j in R^{d'}`` (the shared embedding, the
  parameter actually estimated; ``W1, W2`` are fixed and injective, so closeness of ``p'`` and
  of ``(p^K, p^V)`` are equivalent up to constants);
- ``prompt``: ``theta_j = p_j in R^d`` (``p^K = p^V = p``).

Cells.  Fitted atom ``i`` belongs to the cell ``V_j`` of the true atom nearest to it in Euclidean
distance of the locations (ties to the lower index), as in the Voronoi losses of softmax-gated MoE
(Nguyen, Ho et al., least-squares estimation in softmax gating MoE; paper 2 for prompts).

Losses, with ``Delta_ij = theta_i - theta*_j``:

    D(G, G*) = sum_j | sum_{i in V_j} exp(b_i) - exp(b*_j) |  +  sum_j loc_j

    shared:     loc_j = sum_{i in V_j} exp(b_i) ||Delta_ij||^{1 if |V_j| = 1 else 2}
    nonshared:  loc_j = sum_{i in V_j} exp(b_i) ( ||Delta^K_ij||^r + ||Delta^V_ij||^r )

Paper 2: for the shared structures ``D = O_P(sqrt(log n / n))``, so singleton atoms are
estimated at ``n^{-1/2}`` and atoms in merged cells at ``n^{-1/4}``; for the non-shared structure
no ``r`` gives a polynomial rate when the fit is over-specified.

Per-cell errors (one entry per true atom): ``weight_error_j``, ``location_error_j = loc_j``,
``cell_size_j = |V_j|`` and ``param_error_j = (sum_{i in V_j} exp(b_i) ||Delta_ij||^2 / sum_{i in V_j}
exp(b_i))^{1/2}`` (the weighted RMS distance of the cell's atoms to the true atom; ``||Delta||``
itself for a singleton cell; NaN for an empty cell).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from theory import validation as _v
from theory.moe.model import SHARED_STRUCTURES, check_structure

__all__ = ["Atoms", "VoronoiLoss", "atoms", "voronoi_loss", "voronoi_loss_atoms"]


class Atoms(NamedTuple):
    """A mixing measure: ``weights`` (L,) = exp(b) and ``locations`` (L, q)."""

    weights: jax.Array
    locations: jax.Array


class VoronoiLoss(NamedTuple):
    """The loss ``total`` and its per-cell parts (arrays over the L* true atoms; ``assignment`` over fitted atoms)."""

    total: jax.Array
    weight_error: jax.Array
    location_error: jax.Array
    cell_size: jax.Array
    param_error: jax.Array
    assignment: jax.Array


def atoms(params, *, structure: str) -> tuple[Atoms, tuple[int, ...]]:
    """The atoms of a prompt-parameter dict and the sizes of the location parts.

    Returns ``(Atoms(exp(b), theta), parts)`` with ``parts = (d, d)`` (key, value) for
    ``nonshared`` and ``(q,)`` for the shared structures.  Traceable.
    """
    check_structure(structure)
    w = jnp.exp(params["b"])
    if structure == "nonshared":
        parts = (params["pK"].shape[1], params["pV"].shape[1])
        return Atoms(w, jnp.concatenate([params["pK"], params["pV"]], axis=1)), parts
    return Atoms(w, params["p"]), (params["p"].shape[1],)


@functools.partial(jax.jit, static_argnames=("parts", "shared"))
def voronoi_unchecked(w, loc, w_true, loc_true, r, parts, shared):
    L, Ls = loc.shape[0], loc_true.shape[0]
    diff = loc[:, None, :] - loc_true[None, :, :]  # (L, L*, q)
    assign = jnp.argmin(jnp.sum(diff * diff, axis=-1), axis=1)  # nearest true atom
    onehot = (assign[:, None] == jnp.arange(Ls)[None, :]).astype(w.dtype)  # (L, L*)
    size = jnp.sum(onehot, axis=0)
    own = diff[jnp.arange(L), assign]  # (L, q): Delta_{i, cell(i)}
    sq = jnp.sum(own * own, axis=1)
    if shared:
        power = jnp.where(size[assign] > 1, 2.0, 1.0)
        term = jnp.sqrt(sq) ** power
    else:
        term = jnp.zeros_like(sq)
        start = 0
        for width in parts:
            term = term + jnp.linalg.norm(own[:, start:start + width], axis=1) ** r
            start += width
    loc_err = onehot.T @ (w * term)
    mass = onehot.T @ w
    w_err = jnp.abs(mass - w_true)
    param = jnp.where(mass > 0, jnp.sqrt((onehot.T @ (w * sq)) / jnp.where(mass > 0, mass, 1.0)), jnp.nan)
    return VoronoiLoss(jnp.sum(w_err) + jnp.sum(loc_err), w_err, loc_err, size.astype(jnp.int32), param, assign)


def voronoi_loss_atoms(fitted: Atoms, true: Atoms, *, parts: tuple[int, ...], shared: bool,
                       r: float = 1.0) -> VoronoiLoss:
    """Voronoi loss between two atom sets (module docstring).  ``parts`` splits the location
    coordinates (key, value) for the non-shared power-``r`` form; ``shared`` selects powers 1/2."""
    for name, a in (("fitted", fitted), ("true", true)):
        _v.check_matrix(f"{name}.locations", a.locations)
        L = np.shape(a.locations)[0]
        if np.shape(a.weights) != (L,):
            raise _v.InputError(f"{name}.weights must have shape ({L},), got {np.shape(a.weights)}")
        _v.check_finite(name, tuple(a))
        w = _v.concrete(a.weights)
        if w is not None and np.any(w < 0):
            raise _v.InputError(f"{name}.weights must be non-negative")
    q = np.shape(true.locations)[1]
    if np.shape(fitted.locations)[1] != q:
        raise _v.InputError(
            f"fitted.locations must have {q} columns like true.locations, got {np.shape(fitted.locations)}")
    parts = tuple(int(p) for p in parts)
    if sum(parts) != q or any(p < 1 for p in parts):
        raise _v.InputError(f"parts must be positive sizes summing to the location dimension {q}, got {parts}")
    r = _v.check_positive("r", r)
    if r < 1:
        raise _v.InputError(f"r must be >= 1, got {r}")
    dt = jnp.result_type(fitted.locations, true.locations, fitted.weights, true.weights)
    cast = [jnp.asarray(a, dt) for a in (*fitted, *true)]
    return voronoi_unchecked(*cast, jnp.asarray(r, dt), parts, bool(shared))


def voronoi_loss(fitted, true, *, structure: str, r: float = 1.0) -> VoronoiLoss:
    """Voronoi loss ``D(G_fitted, G_true)`` for prompt-parameter dicts of ``structure``.

    Shared structures (``shared_linear``, ``shared_tanh``, ``prompt``) use power 1 on singleton
    cells and 2 on merged cells (``r`` is ignored); ``nonshared`` uses power ``r >= 1`` on the key
    and the value parts.  ``fitted`` may have more atoms than ``true`` (over-specified fit).

    Args:
        fitted: prompt dict of L fitted atoms (``b`` (L,) with ``pK, pV`` (L, q) or ``p`` (L, q)).
        true: prompt dict of L* true atoms, same keys and location widths.
        structure: one of ``STRUCTURES``.
        r: power of the non-shared location error (>= 1).

    Returns:
        :class:`VoronoiLoss`: ``total`` scalar; ``weight_error``, ``location_error``,
        ``cell_size``, ``param_error`` (L*,); ``assignment`` (L,) (true atom of each fitted atom).

    Raises:
        InputError: unknown ``structure``; ``r`` not a finite number >= 1; ``fitted``/``true``
            not dicts with the structure's keys, ``b`` not 1-D of length >= 1, locations not
            (L, q) with matching q; values not finite.
    """
    check_structure(structure)
    _v.check_positive("r", r)
    want = ("b", "pK", "pV") if structure == "nonshared" else ("b", "p")
    cols = {}
    for name, p in (("true", true), ("fitted", fitted)):
        if not isinstance(p, dict) or set(p) != set(want):
            got = tuple(p) if isinstance(p, dict) else type(p).__name__
            raise _v.InputError(f"{name} for structure {structure!r} must be a dict with keys {want}, got {got}")
        L = np.shape(p["b"])
        if len(L) != 1 or L[0] < 1:
            raise _v.InputError(f"{name}['b'] must be a 1-D array of L >= 1 biases, got shape {L}")
        for k in want[1:]:
            shape = np.shape(p[k])
            if len(shape) != 2 or shape[0] != L[0] or shape[1] < 1 or shape[1] != cols.setdefault(k, shape[1]):
                raise _v.InputError(
                    f"{name}[{k!r}] must have shape ({L[0]}, q) with q as in true[{k!r}], got {shape}")
    fa, parts = atoms({k: jnp.asarray(v) for k, v in fitted.items()}, structure=structure)
    ta, _ = atoms({k: jnp.asarray(v) for k, v in true.items()}, structure=structure)
    return voronoi_loss_atoms(fa, ta, parts=parts, shared=structure in SHARED_STRUCTURES, r=r)
