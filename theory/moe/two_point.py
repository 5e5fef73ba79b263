"""A least-favourable two-point experiment for the prefix MoE (Le Cam's method; paper 2, spec section 5).

Two truths: ``G0`` and ``G1``, where ``G1`` splits one atom of ``G0`` into a pair (built with
:func:`theory.moe.identifiability.split_configurations`).  From ``n`` samples
``Y = f_G(X) + noise * N(0, I)`` with ``X`` uniform on ``[-box, box]^{N d}``, the most powerful
test of ``H0: G = G0`` against ``H1: G = G1`` (Neyman-Pearson) rejects for large

    T = ( sum_i ||Y_i - f_0(X_i)||^2 - sum_i ||Y_i - f_1(X_i)||^2 ) / (2 noise^2),

i.e. it asks whether least squares over the two-point set ``{G0, G1}`` prefers ``G1``.  Given the
inputs, ``T`` is Gaussian with variance ``Delta^2 = sum_i ||f_1(X_i) - f_0(X_i)||^2 / noise^2`` and
mean ``-Delta^2/2`` under H0, ``+Delta^2/2`` under H1, so ``S = (T + Delta^2/2) / Delta`` is
N(0, 1) under H0 and the test ``S > z_{1 - alpha}`` has level exactly ``alpha`` for every draw of
the inputs; its power given the inputs is ``Phi(Delta - z_{1 - alpha})``.

If no test can tell ``G1`` from ``G0`` (power bounded away from 1 as n grows), no estimator can
have a Voronoi error below about half of ``D(G0, G1)`` with high probability at that n.  The
pair is least favourable when ``||f_1 - f_0||_{L2} ~ n^{-1/2}`` while ``D(G0, G1)`` stays large.

:func:`exact_power` is the power itself, ``Phi(sqrt(n) ||f_1 - f_0||_{L2(mu)} / noise - z_{1 - alpha})``
(``Delta^2`` replaced by its mean ``n ||f_1 - f_0||^2_{L2(mu)} / noise^2``): a closed form, so the
experiment computes it and simulates nothing.  Its only input that depends on the pair is
``||f_1 - f_0||``, so the power's behaviour in n restates how ``||f_1 - f_0||`` vanishes with the
separation, i.e. the identifiability modulus (docs/reparam_model.md, section 9).
:func:`likelihood_ratio_test` simulates the test (fresh inputs and noise per replication, ``T``
from the data, not from the formula); it is kept as the check of that formula (tests), not as
evidence of its own.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.stats import norm as _norm

from theory import validation as _v
from theory.moe.model import MoEFrozen, Reparam, features_from_arrays, check_params, check_structure, prompt_keys_values
from theory.moe.model import regression_from_features
from theory.moe.identifiability import modulus, split_configurations

__all__ = ["TwoPointTest", "split_pair", "separation_for_signal", "exact_power", "likelihood_ratio_test"]


class TwoPointTest(NamedTuple):
    """Per replication (arrays (reps,)): ``reject`` (bool, the level-``alpha`` test under H1),
    ``reject_null`` (bool, the same test on data drawn under H0), ``signal`` (``Delta``) and
    ``exact_power`` (``Phi(Delta - z_{1 - alpha})``, the power given that replication's inputs)."""

    reject: jax.Array
    reject_null: jax.Array
    signal: jax.Array
    exact_power: jax.Array


def split_pair(truth, h, *, structure: str, d: int, t: float = 0.5, u=None, atom: int = 0):
    """``G1`` for separations ``h`` (B,): true atom ``atom`` split symmetrically by ``+-delta`` (weights w*/2).

    Non-shared: ``delta = (h e_1, t e_1)`` (keys ``2h`` apart, values ``2t`` apart); shared:
    ``delta = h u`` with ``u`` a unit vector of the location space (``p'`` or ``p``).

    Args:
        truth: prompt parameters of ``G*`` (``L*`` atoms); h: separations, scalar or (B,).
        structure: one of ``STRUCTURES``; d: embedding dimension.
        t: half the value separation (non-shared only); u: unit vector (q,) (shared only).
        atom: index of the true atom that is split.
    Returns:
        The batched parameter dict of :func:`theory.moe.identifiability.split_configurations`
        (leading axis B, ``L* + 1`` atoms).
    Raises:
        InputError: ``u`` missing or not 1-D for a shared structure, and what
            ``split_configurations`` refuses.
    """
    h = np.atleast_1d(np.asarray(h, float))
    if structure == "nonshared":
        zero = np.zeros_like(h)
        delta = np.stack([h] + [zero] * (d - 1) + [np.full_like(h, float(t))] + [zero] * (d - 1), axis=1)
    else:
        if u is None or np.ndim(u) != 1:
            raise _v.InputError(f"u (a unit vector of the location space) is required for structure {structure!r}")
        delta = h[:, None] * np.asarray(u, float)[None, :]
    return split_configurations(truth, structure=structure, atom=atom, delta1=delta, delta2=-delta,
                                frac=np.full(len(h), 0.5), d=d)


def separation_for_signal(frozen: MoEFrozen, truth, *, structure: str, X, n: int, noise: float, signal: float,
                          reparam: Reparam | None = None, t: float = 0.5, u=None) -> float:
    """The separation ``h`` of :func:`split_pair` at which ``Delta = sqrt(n) ||f_1 - f_0||_{L2} / noise``
    equals ``signal`` (``L2`` over the inputs ``X``), by log interpolation on ``h = 1e-6 .. 1``.

    Args:
        frozen: :class:`MoEFrozen`; truth: prompt parameters of ``G0 = G*``; structure: one of
            ``STRUCTURES``; X: inputs (n_X, N d) for the L2 norm.
        n: sample size (integer >= 1); noise: noise std (> 0); signal: target ``Delta`` (> 0).
        reparam, t, u: as in :func:`split_pair` (``reparam`` for shared_linear/shared_tanh).
    Returns:
        The separation ``h``, a Python float in (1e-6, 1].
    Raises:
        InputError: ``n``, ``noise`` or ``signal`` out of range; no ``h`` in that range reaches
            ``signal`` (or already ``h = 1e-6`` exceeds it); and what :func:`split_pair` and
            :func:`theory.moe.identifiability.modulus` refuse.
    """
    hs = np.logspace(-6, 0, 121)
    d = frozen.B.shape[1]
    dist = np.asarray(modulus(frozen, truth, split_pair(truth, hs, structure=structure, d=d, t=t, u=u),
                              structure=structure, X=X, reparam=reparam).distance)
    sig = np.sqrt(_v.check_count("n", n)) * dist / _v.check_positive("noise", noise)
    signal = _v.check_positive("signal", signal)
    k = int(np.argmax(sig >= signal))
    if sig[k] < signal or k == 0:
        raise _v.InputError(f"no separation h in [1e-6, 1] gives signal {signal} at n = {n} (range {sig[0]:.3g}.."
                            f"{sig.max():.3g})")
    return float(np.exp(np.interp(np.log(signal), np.log(sig[k - 1:k + 1]), np.log(hs[k - 1:k + 1]))))


def exact_power(distance, n, *, noise: float, alpha: float = 0.05):
    """Power of the level-``alpha`` Neyman-Pearson test: ``Phi(sqrt(n) distance / noise - z_{1 - alpha})``.

    Args:
        distance: ``||f_1 - f_0||_{L2(mu)}`` (>= 0), scalar or array; n: sample sizes (>= 1),
            broadcast against ``distance``; noise: noise std (> 0); alpha: level in (0, 1).
    Returns:
        numpy array of powers in ``[alpha, 1]``.
    Raises:
        InputError: negative or non-finite distance, n < 1, noise <= 0, alpha outside (0, 1).
    """
    distance, n = np.asarray(distance, float), np.asarray(n, float)
    if not np.all(np.isfinite(distance)) or np.any(distance < 0):
        raise _v.InputError("distance must be finite and >= 0")
    if not np.all(np.isfinite(n)) or np.any(n < 1):
        raise _v.InputError("n must be >= 1")
    noise = _v.check_positive("noise", noise)
    alpha = _v.check_probability("alpha", alpha)
    if not 0 < alpha < 1:
        raise _v.InputError(f"alpha must lie in (0, 1), got {alpha}")
    return np.asarray(_norm.cdf(np.sqrt(n) * distance / noise - _norm.ppf(1 - alpha)))


@functools.partial(jax.jit, static_argnames=("structure0", "structure1", "n", "reps"))
def _simulate(keys, frozen, g0, g1, reparam, noise, box, z, structure0, structure1, n, reps):
    D = frozen.B.shape[0]
    dt = frozen.B.dtype

    def one(key):
        kx, k1, k0 = jax.random.split(key, 3)
        X = jax.random.uniform(kx, (n, D), dt, -box, box)
        feats = features_from_arrays(X, frozen.A, frozen.c, frozen.H, frozen.B)
        f0 = regression_from_features(feats, frozen.C, *prompt_keys_values(structure0, g0, reparam))
        f1 = regression_from_features(feats, frozen.C, *prompt_keys_values(structure1, g1, reparam))
        delta2 = jnp.sum((f1 - f0) ** 2) / noise ** 2
        delta = jnp.sqrt(delta2)

        def stat(Y):
            T = (jnp.sum((Y - f0) ** 2) - jnp.sum((Y - f1) ** 2)) / (2 * noise ** 2)
            return (T + delta2 / 2) / delta

        s1 = stat(f1 + noise * jax.random.normal(k1, f1.shape, dt))
        s0 = stat(f0 + noise * jax.random.normal(k0, f0.shape, dt))
        return s1 > z, s0 > z, delta, _norm.cdf(delta - z)

    return jax.lax.map(one, keys)


def likelihood_ratio_test(frozen: MoEFrozen, g0, g1, *, structure: str, key, n: int, reps: int, noise: float,
                          reparam: Reparam | None = None, box: float = 1.0, alpha: float = 0.05) -> TwoPointTest:
    """Simulate the Neyman-Pearson test of ``G0`` against ``G1`` (module docstring) ``reps`` times.

    Args:
        frozen: the fixed MoE matrices (their dtype is the computation's).
        g0, g1: prompt parameters of the two truths (any numbers of atoms, same structure).
        key: PRNG key; replication ``k`` uses ``split(key, reps)[k]``.
        n: samples per replication; reps: replications.
        noise: standard deviation of the Gaussian noise; box: half-width of the input box.
        alpha: level of the test.
    Returns:
        :class:`TwoPointTest` with arrays of shape (reps,).
    Raises:
        InputError: bad structure or parameters, non-positive n, reps, noise or box, alpha not in (0, 1),
            or ``f_0 = f_1`` on a replication's inputs (the hypotheses coincide).
    """
    check_structure(structure)
    d = frozen.B.shape[1]
    check_params(structure, g0, d=d, reparam=reparam, name="g0")
    check_params(structure, g1, d=d, reparam=reparam, name="g1")
    n = _v.check_count("n", n)
    reps = _v.check_count("reps", reps)
    noise = _v.check_positive("noise", noise)
    box = _v.check_positive("box", box)
    alpha = _v.check_probability("alpha", alpha)
    if not 0 < alpha < 1:
        raise _v.InputError(f"alpha must lie in (0, 1), got {alpha}")
    dt = frozen.B.dtype
    fz = MoEFrozen(*(jnp.asarray(a, dt) for a in frozen))
    cast = lambda p: {k: jnp.asarray(v, dt) for k, v in p.items()}  # noqa: E731
    rp = None if reparam is None else Reparam(*(jnp.asarray(a, dt) for a in reparam))
    z = float(_norm.ppf(1 - alpha))
    out = TwoPointTest(*_simulate(jax.random.split(key, reps), fz, cast(g0), cast(g1), rp, jnp.asarray(noise, dt),
                                  jnp.asarray(box, dt), jnp.asarray(z, dt), structure, structure, n, reps))
    sig = _v.concrete(out.signal)
    if sig is not None and not np.all(sig > 0):
        raise _v.InputError("g0 and g1 give the same regression function on the inputs (signal 0); "
                            "the two-point test needs distinct hypotheses")
    return out
