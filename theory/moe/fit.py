"""Least-squares estimation of prompts in the prefix MoE (spec section 5).

Model (paper 2, Le et al. ICLR 2025; :mod:`theory.moe.model`): ``Y = f_{G*}(X) + eps``, ``X`` uniform
on the box ``[-box, box]^{N d}``, ``eps ~ N(0, noise^2 I_{d_v})``.  The estimator is

    G_hat = argmin_G  (1 / 2n) sum_i || Y_i - f_G(X_i) ||^2

over configurations with ``L >= L*`` prompts of one structure.  It is computed in the dtype of
the data (float64 in the experiments), all inside one jitted function: Adam (``optax.adam``) for
``adam_steps`` steps, then a second-order polish of up to ``polish_steps`` iterations, either
``polish="lm"`` (default: Levenberg-Marquardt, i.e. damped Gauss-Newton on the residuals, with a
closed-form Jacobian) or ``polish="lbfgs"`` (``optax.lbfgs`` with its zoom line search).  LM is
the default because over-specified fits have quartic (flat) directions in which L-BFGS stalls
near its starting point (measured: the merged-cell error then tracks the initial jitter), while LM
reaches the same minimum as MINPACK's ``lm`` (scipy) from every start.  ``restarts``
initialisations run one after the other (``lax.map``) and the lowest training loss wins.
LM stops on a relative decrease ``ftol`` or, with ``resolution``, when the Gauss-Newton model
predicts less than ``resolution * sigma_hat^2 / n`` of the loss left (``sigma^2 / n`` is the
statistical resolution of the loss; an absolute rule that follows quartic valleys to the end).  The
prompt-independent features of ``X`` (:func:`theory.moe.model.moe_features`) are computed once.

Initialisations (``init``):

- ``"random"``: ``b = -log L``, locations i.i.d. ``N(0, scale^2)``;
- ``"split"``: near a reference configuration ``true_params`` with ``L0 <= L`` atoms (the truth,
  for an oracle start, or a pilot fit, :mod:`theory.moe.multistart`).  Restart ``k`` splits atom
  ``s = k mod L0`` into ``L - L0 + 1`` copies of weight ``exp(b_s) / (L - L0 + 1)`` (so the
  measure is unchanged); every location gets ``N(0, jitter^2)`` noise.

A single start ends at a local minimum; the least-squares estimator over many starts, with the
diagnostics that say whether its lowest loss was reached twice, is :func:`theory.moe.multistart.fit_multistart`.

Parameter set: with ``bound`` the locations are restricted to ``[-bound, bound]`` (the compact
set the rate theory assumes; biases stay free) and every step is projected onto it.  Without it
an extra ``shared_tanh`` atom of vanishing weight can drift into the saturated region of
``tanh`` (``|p'| > 100`` measured), where it is unidentifiable.  ``regression_l2_error`` gives
``||f_hat - f*||_{L2}`` on test inputs.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.flatten_util import ravel_pytree

from theory import validation as _v
from theory.moe.optim import lbfgs_polish as _lbfgs, levenberg_marquardt as _levenberg_marquardt
from theory.moe.model import (
    MoEFeatures,
    MoEFrozen,
    Reparam,
    features_from_arrays,
    check_params,
    check_structure,
    moe_features,
    prompt_keys_values,
    regression_from_features,
    regression_jacobian,
)

__all__ = [
    "FitResult",
    "INITS",
    "POLISHERS",
    "sample_regression",
    "init_params",
    "least_squares_loss",
    "fit_least_squares",
    "Problem",
    "prepare_problem",
    "stack_starts",
    "fit_starts",
    "regression_l2_error",
]

INITS = ("random", "split")
POLISHERS = ("lm", "lbfgs")


class FitResult(NamedTuple):
    """Best fit over restarts: ``params``, its training ``loss``, every restart's final loss, the
    gradient norm at the returned point, and (LM polish) for the returned restart the number of
    LM ``iterations`` and the Gauss-Newton ``predicted_decrease`` of the loss still available at
    the end (both 0 for L-BFGS).  ``predicted_decrease`` below ``resolution * sigma_hat^2 / n``
    means the fit stopped on the resolution rule, not on ``polish_steps``."""

    params: dict
    loss: jax.Array
    restart_losses: jax.Array
    grad_norm: jax.Array
    iterations: jax.Array | int = 0
    predicted_decrease: jax.Array | float = 0.0


def _dims(frozen: MoEFrozen):
    return frozen.B.shape[0], frozen.B.shape[1]


def sample_regression(frozen: MoEFrozen, true_params, *, structure: str, key, n: int, noise: float,
                      reparam: Reparam | None = None, box: float = 1.0, dtype=None):
    """Draw ``(X, Y)``: ``X`` (n, N d) uniform on ``[-box, box]^{N d}``, ``Y = f_{G*}(X) + noise * N(0, I)``."""
    n = _v.check_count("n", n)
    noise = _v.check_positive("noise", noise)
    box = _v.check_positive("box", box)
    check_params(structure, true_params, d=frozen.B.shape[1], reparam=reparam, name="true_params")
    dt = _v.check_dtype("dtype", dtype if dtype is not None else frozen.B.dtype)
    kx, ke = jax.random.split(key)
    X = jax.random.uniform(kx, (n, frozen.B.shape[0]), dt, -box, box)
    feats = features_from_arrays(X, *(jnp.asarray(a, dt) for a in (frozen.A, frozen.c, frozen.H, frozen.B)))
    b, K, V = prompt_keys_values(structure, {k: jnp.asarray(v, dt) for k, v in true_params.items()}, reparam)
    f = regression_from_features(feats, jnp.asarray(frozen.C, dt), b, K, V)
    return X, f + noise * jax.random.normal(ke, f.shape, dt)


def init_params(structure: str, L: int, *, key, d: int, reparam: Reparam | None = None, method: str = "random",
                true_params=None, jitter: float = 0.1, scale: float = 1.0, split_atom: int = 0, dtype=jnp.float64):
    """One initial prompt configuration with ``L`` prompts (module docstring, "Initialisations")."""
    check_structure(structure)
    L = _v.check_count("L", L)
    dt = _v.check_dtype("dtype", dtype)
    d = _v.check_count("d", d)
    if method not in INITS:
        raise _v.InputError(f"method must be one of {INITS}, got {method!r}")
    if structure in ("shared_linear", "shared_tanh"):
        if reparam is None or np.ndim(reparam.W1) != 2:
            raise _v.InputError(f"reparam (W1, W2 of shape (d, d')) is required for structure {structure!r}")
        widths = {"p": np.shape(reparam.W1)[1]}
    else:
        widths = {"pK": d, "pV": d} if structure == "nonshared" else {"p": d}
    keys = jax.random.split(key, len(widths))
    if method == "random":
        scale = _v.check_positive("scale", scale)
        out = {k: scale * jax.random.normal(kk, (L, w), dt) for kk, (k, w) in zip(keys, widths.items())}
        out["b"] = jnp.full((L,), -np.log(L), dt)
        return out
    if true_params is None:
        raise _v.InputError("true_params is required for method='split'")
    L_star = check_params(structure, true_params, d=d, reparam=reparam, name="true_params")
    if L < L_star:
        raise _v.InputError(f"L must be >= the number of true prompts {L_star} for method='split', got {L}")
    jitter = _v.check_positive("jitter", jitter)
    s = _v.check_count("split_atom", split_atom, minimum=0) % L_star
    copies = L - L_star + 1
    idx = np.concatenate([np.arange(L_star), np.full(L - L_star, s)])
    b = jnp.asarray(true_params["b"], dt)[idx]
    b = b.at[np.flatnonzero(idx == s)].add(-np.log(copies))
    out = {"b": b}
    for kk, k in zip(keys, widths):
        base = jnp.asarray(true_params[k], dt)[idx]
        out[k] = base + jitter * jax.random.normal(kk, base.shape, dt)
    return out


def least_squares_loss(params, features: MoEFeatures, Y, C, *, structure: str, reparam: Reparam | None = None):
    """``(1/2n) sum_i ||Y_i - f_G(X_i)||^2`` from precomputed features.  Traceable."""
    b, K, V = prompt_keys_values(structure, params, reparam)
    r = Y - regression_from_features(features, C, b, K, V)
    return 0.5 * jnp.mean(jnp.sum(r * r, axis=1))


@functools.partial(jax.jit, static_argnames=("structure", "adam_steps", "polish", "polish_steps", "by_resolution",
                                             "batch_size"))
def _fit(inits, features, Y, C, reparam, learning_rate, ftol, bound, resolution, structure, adam_steps, polish,
         polish_steps, by_resolution=False, batch_size=None):
    """Every start of ``inits`` (a pytree with a leading start axis) fitted: per start
    ``(params, loss, grad_norm, iterations, predicted_decrease)``."""
    loss = functools.partial(least_squares_loss, features=features, Y=Y, C=C, structure=structure, reparam=reparam)
    _, unravel = ravel_pytree(jax.tree_util.tree_map(lambda a: a[0], inits))
    scale = 1.0 / jnp.sqrt(jnp.asarray(Y.shape[0], Y.dtype))

    def phi(th):  # (b, K, V) of the structure, flattened: (q,) with q = L (1 + 2 d)
        b, K, V = prompt_keys_values(structure, unravel(th), reparam)
        return jnp.concatenate([b, K.ravel(), V.ravel()])

    def normal_equations(th):
        # Residuals r = (Y - f) / sqrt(n); dr/dtheta = -(df/dphi)(dphi/dtheta) / sqrt(n), with the
        # closed-form df/dphi (theory.moe.model.regression_jacobian) and the tiny dphi/dtheta by autodiff.
        b, K, V = prompt_keys_values(structure, unravel(th), reparam)
        f, J_b, J_K, J_V = regression_jacobian(features, C, b, K, V)
        n, d_v = Y.shape
        Jf = jnp.concatenate([J_b, J_K.reshape(n, d_v, -1), J_V.reshape(n, d_v, -1)], axis=2)
        Jf = Jf.reshape(n * d_v, -1) * scale
        r = ((Y - f) * scale).ravel()
        A = jax.jacfwd(phi)(th)  # (q, p)
        return A.T @ (Jf.T @ Jf) @ A, -(A.T @ (Jf.T @ r)), 0.5 * (r @ r)

    def project(p):  # the compact parameter set: locations in [-bound, bound], biases free
        return {k: v if k == "b" else jnp.clip(v, -bound, bound) for k, v in p.items()}

    def project_flat(th):
        return ravel_pytree(project(unravel(th)))[0]

    def one(p0):
        adam = optax.adam(learning_rate)
        p0 = project(p0)

        def adam_step(carry, _):
            p, s = carry
            u, s = adam.update(jax.grad(loss)(p), s, p)
            return (project(optax.apply_updates(p, u)), s), None

        (p, _), _ = lax.scan(adam_step, (p0, adam.init(p0)), None, length=adam_steps)
        it, pred = jnp.asarray(0), jnp.zeros((), Y.dtype)
        if polish == "lm":
            n, d_v = Y.shape
            # sigma_hat^2 / n with sigma_hat^2 = 2 loss / d_v, the residual variance per entry
            res = (lambda c: resolution * 2.0 * c / (d_v * n)) if by_resolution else None
            th, _, it, pred = _levenberg_marquardt(normal_equations, lambda th: loss(unravel(th)),
                                                   ravel_pytree(p)[0], polish_steps, ftol, 1e-12, project_flat, res)
            p = unravel(th)
        elif polish_steps:
            p = _lbfgs(loss, p, polish_steps, project)
        v = loss(p)
        g = ravel_pytree(jax.grad(loss)(p))[0]
        return p, jnp.where(jnp.isfinite(v), v, jnp.inf), jnp.linalg.norm(g), it, pred

    # batch_size=None: one start after the other (each stops on its own); batch_size=k: k starts at a time
    # vmapped (one batched step for all k, run until the slowest of the k stops).
    return lax.map(one, inits, batch_size=batch_size)


@_v.validate_args(X=2, Y=2, frozen=MoEFrozen, key="key")
def fit_least_squares(X, Y, frozen: MoEFrozen, *, structure: str, L: int, key, reparam: Reparam | None = None,
                      restarts: int = 4, init: str = "random", true_params=None, jitter: float = 0.1,
                      scale: float = 1.0, adam_steps: int = 200, polish: str = "lm", polish_steps: int = 300,
                      learning_rate: float = 0.01, ftol: float = 1e-12, bound: float | None = None,
                      resolution: float | None = None) -> FitResult:
    """Least-squares fit of ``L`` prompts of ``structure`` to ``(X, Y)`` (module docstring).

    ``X`` (n, N d), ``Y`` (n, d_v) in float32 or float64 (float64 recommended).  ``init="split"``
    needs ``true_params`` (the data-generating prompts): an oracle start, used to study the
    estimator rather than the optimiser.  ``ftol`` is LM's relative-decrease stopping tolerance.
    ``bound``: if given, the estimator is restricted to the compact set of locations in
    ``[-bound, bound]`` (every entry of ``pK, pV`` or ``p``; biases stay free), as the rate theory
    assumes; every optimiser step is projected onto it.
    ``resolution``: if given (> 0), LM stops when the Gauss-Newton model predicts that less than
    ``resolution * sigma_hat^2 / n`` of the loss can still be removed (``sigma_hat^2 = 2 loss / d_v``,
    the residual variance; ``sigma^2 / n`` is the statistical resolution of the loss), instead
    of on the relative ``ftol``; ``polish_steps`` still caps the iterations.

    Args:
        X, Y: data (n, N d) and (n, d_v); frozen: :class:`MoEFrozen`; structure, L, reparam: the model.
        key: PRNG key; restarts, init, true_params, jitter, scale: the starts; adam_steps,
            learning_rate, polish, polish_steps, ftol, bound, resolution: the optimiser (above).

    Returns:
        :class:`FitResult`; ``params`` as from :func:`init_params` (``b`` (L,), locations (L, q)).

    Raises:
        InputError: bad shapes, non-finite data, or an option out of range (named).
    """
    prob = prepare_problem(X, Y, frozen, structure=structure, reparam=reparam, adam_steps=adam_steps, polish=polish,
                           polish_steps=polish_steps, learning_rate=learning_rate, ftol=ftol, bound=bound,
                           resolution=resolution)
    L = _v.check_count("L", L)
    restarts = _v.check_count("restarts", restarts)
    if init not in INITS:
        raise _v.InputError(f"init must be one of {INITS}, got {init!r}")
    keys = jax.random.split(key, restarts)
    inits = stack_starts([init_params(structure, L, key=k, d=prob.d, reparam=reparam, method=init,
                                      true_params=true_params, jitter=jitter, scale=scale, split_atom=i,
                                      dtype=prob.dtype) for i, k in enumerate(keys)])
    params, losses, gnorms, its, preds = fit_starts(prob, inits)
    best = int(jnp.argmin(losses))
    return FitResult(jax.tree_util.tree_map(lambda a: a[best], params), losses[best], losses, gnorms[best], its[best],
                     preds[best])


class Problem(NamedTuple):
    """A validated least-squares problem (:func:`prepare_problem`): features, targets and the
    optimiser's settings, ready for :func:`fit_starts`."""

    features: MoEFeatures
    Y: jax.Array
    C: jax.Array
    reparam: Reparam | None
    structure: str
    d: int
    dtype: object
    options: dict


def prepare_problem(X, Y, frozen: MoEFrozen, *, structure: str, reparam: Reparam | None = None, adam_steps: int = 200,
                    polish: str = "lm", polish_steps: int = 300, learning_rate: float = 0.01, ftol: float = 1e-12,
                    bound: float | None = None, resolution: float | None = None) -> Problem:
    """Check the data and the optimiser's options (as :func:`fit_least_squares` documents them) and
    compute the prompt-independent features once.  Raises :class:`InputError` naming the bad argument."""
    check_structure(structure)
    X, Y = jnp.asarray(X), jnp.asarray(Y)
    D, d = _dims(frozen)
    _v.check_matrix("X", X, cols=D)
    _v.check_matrix("Y", Y, cols=frozen.C.shape[0])
    if Y.shape[0] != X.shape[0]:
        raise _v.InputError(f"Y must have one row per row of X ({X.shape[0]}), got {Y.shape[0]}")
    _v.check_finite("X", X)
    _v.check_finite("Y", Y)
    dt = _v.check_dtype("X.dtype", jnp.result_type(X, Y))
    adam_steps = _v.check_count("adam_steps", adam_steps, minimum=0)
    polish_steps = _v.check_count("polish_steps", polish_steps, minimum=0)
    learning_rate = _v.check_positive("learning_rate", learning_rate)
    ftol = _v.check_positive("ftol", ftol)
    bound = np.inf if bound is None else _v.check_positive("bound", bound)
    resolution = 0.0 if resolution is None else _v.check_positive("resolution", resolution)
    if polish not in POLISHERS:
        raise _v.InputError(f"polish must be one of {POLISHERS}, got {polish!r}")
    if structure in ("shared_linear", "shared_tanh"):
        width = np.shape(reparam.W1)[1] if reparam is not None and np.ndim(reparam.W1) == 2 else 1
        check_params(structure, {"b": np.zeros(1), "p": np.zeros((1, width))}, d=d, reparam=reparam, name="reparam")
    frozen = MoEFrozen(*(jnp.asarray(a, dt) for a in frozen))
    if reparam is not None:
        reparam = Reparam(*(jnp.asarray(a, dt) for a in reparam))
    options = dict(learning_rate=jnp.asarray(learning_rate, dt), ftol=jnp.asarray(ftol, dt),
                   bound=jnp.asarray(bound, dt), resolution=jnp.asarray(resolution, dt), adam_steps=adam_steps,
                   polish=polish, polish_steps=polish_steps, by_resolution=resolution > 0)
    return Problem(moe_features(X, frozen), Y.astype(dt), frozen.C, reparam, structure, d, dt, options)


def stack_starts(starts):
    """A list of parameter pytrees of one shape -> one pytree with a leading start axis."""
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *starts)


def fit_starts(prob: Problem, inits, *, batch_size: int | None = None):
    """Fit every start of ``inits`` (a pytree with a leading start axis, :func:`stack_starts`) by
    Adam then the polish, in one jitted call.  ``batch_size``: None runs the starts one after the
    other (each stops on its own); ``k`` runs ``k`` at a time vmapped.  Returns per start
    ``(params, loss, grad_norm, iterations, predicted_decrease)``, a non-finite loss as ``inf``."""
    o = prob.options
    return _fit(inits, prob.features, prob.Y, prob.C, prob.reparam, o["learning_rate"], o["ftol"], o["bound"],
                o["resolution"], prob.structure, o["adam_steps"], o["polish"], o["polish_steps"],
                by_resolution=o["by_resolution"], batch_size=batch_size)


@functools.partial(jax.jit, static_argnames=("structure",))
def _l2(features, C, fitted, true, reparam, structure):
    f1 = regression_from_features(features, C, *prompt_keys_values(structure, fitted, reparam))
    f0 = regression_from_features(features, C, *prompt_keys_values(structure, true, reparam))
    return jnp.sqrt(jnp.mean(jnp.sum((f1 - f0) ** 2, axis=1)))


def regression_l2_error(frozen: MoEFrozen, fitted, true, *, structure: str, X, reparam: Reparam | None = None):
    """``||f_fitted - f_true||_{L2(mu)}`` estimated as ``sqrt(mean_i ||f_fitted(X_i) - f_true(X_i)||^2)``
    over test inputs ``X`` (draws from mu, e.g. uniform on the box)."""
    d = frozen.B.shape[1]
    check_params(structure, fitted, d=d, reparam=reparam, name="fitted")
    check_params(structure, true, d=d, reparam=reparam, name="true")
    feats = moe_features(X, frozen)
    dt = feats.U.dtype
    cast = lambda p: {k: jnp.asarray(v, dt) for k, v in p.items()}  # noqa: E731
    return _l2(feats, jnp.asarray(frozen.C, dt), cast(fitted), cast(true), reparam, structure)
