"""The second-order polishers of :mod:`theory.moe.fit`: projected Levenberg-Marquardt with a
resolution-based stopping rule, and ``optax.lbfgs`` keeping the best iterate.  Pure, traceable."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from jax import lax

__all__ = ["levenberg_marquardt", "lbfgs_polish", "gn_predicted_decrease"]


def _select(ok, a, b):
    return jax.tree_util.tree_map(lambda x, y: jnp.where(ok, x, y), a, b)


def gn_predicted_decrease(A, g, th, project):
    """Decrease of the Gauss-Newton model ``c + g.s + s.A s / 2`` along the projected GN step
    ``s = project(th - A^+ g) - th``: the part of the cost a converged fit could still remove."""
    dA = jnp.diag(A)
    s = project(th - jnp.linalg.solve(A + 1e-12 * jnp.max(dA) * jnp.eye(A.shape[0], dtype=A.dtype), g)) - th
    return jnp.maximum(-(g @ s + 0.5 * s @ (A @ s)), 0.0)


def levenberg_marquardt(normal_equations, cost, theta0, max_iter, ftol, xtol, project, resolution=None):
    """Minimise a least-squares cost by projected Levenberg-Marquardt (Marquardt's scaling).

    ``normal_equations(theta) -> (J^T J, J^T r, cost)`` for residuals ``r`` with Jacobian ``J``.
    Step ``-(J^T J + lam diag(J^T J))^{-1} J^T r``, projected by ``project`` onto the parameter
    set; accepted steps divide ``lam`` by 3, rejected ones multiply it by 4.  Stops after
    ``max_iter`` iterations or when ``lam > 1e12``, and otherwise

    - ``resolution=None``: when an accepted step lowers the cost by less than ``ftol`` (relative)
      or moves ``theta`` by less than ``xtol`` (relative);
    - ``resolution`` given (a function of the cost, in cost units): when the Gauss-Newton model
      predicts that less than ``resolution(cost)`` can still be removed
      (:func:`gn_predicted_decrease`) -- an absolute rule, so a quartic valley, where relative
      decreases are tiny long before the statistical resolution, is followed to its end.

    Returns ``(theta, cost, iterations, predicted_decrease)``.
    """
    def body(s):
        th, lam, _, it, _, _ = s
        A, g, c = normal_equations(th)
        dA = jnp.diag(A)
        pred = gn_predicted_decrease(A, g, th, project)
        step = -jnp.linalg.solve(A + lam * jnp.diag(dA + 1e-12 * jnp.max(dA)), g)
        tn = project(th + step)
        cn = cost(tn)
        ok = jnp.isfinite(cn) & (cn <= c)
        if resolution is None:
            flat = ok & ((c - cn <= ftol * c) | (jnp.linalg.norm(tn - th) <= xtol * (jnp.linalg.norm(th) + xtol)))
        else:
            # an accepted step that removed, and a model that predicts, less than the resolution: a
            # predicted decrease of 0 alone also occurs far from a minimum (a projected or ill-conditioned
            # Gauss-Newton step that does not descend), where it stopped random starts at iteration 1.
            flat = ok & (c - cn <= resolution(c)) & (pred <= resolution(c))
        done = flat | (lam > 1e12)
        th, c = jnp.where(ok, tn, th), jnp.where(ok, cn, c)
        lam = jnp.where(ok, jnp.maximum(lam / 3, 1e-15), lam * 4)
        return th, lam, c, it + 1, done, pred

    c0 = cost(theta0)
    nan = jnp.asarray(jnp.nan, theta0.dtype)
    init = (theta0, jnp.asarray(1e-3, theta0.dtype), c0, 0, ~jnp.isfinite(c0), nan)
    th, _, c, it, _, pred = lax.while_loop(lambda s: (s[3] < max_iter) & ~s[4], body, init)
    return th, c, it, pred


def lbfgs_polish(loss, p, steps, project):
    """``steps`` iterations of ``optax.lbfgs`` (zoom line search), keeping the best iterate."""
    n_par = sum(x.size for x in jax.tree_util.tree_leaves(p))
    lbfgs = optax.lbfgs(memory_size=max(10, n_par))
    value_and_grad = optax.value_and_grad_from_state(loss)

    def step(carry, _):
        p, s, best_p, best_v = carry
        v, g = value_and_grad(p, state=s)
        ok = jnp.isfinite(v) & (v < best_v)
        best_p, best_v = _select(ok, p, best_p), jnp.where(ok, v, best_v)
        u, s_new = lbfgs.update(g, s, p, value=v, grad=g, value_fn=loss)
        p_new = project(optax.apply_updates(p, u))
        finite = jnp.all(jnp.asarray([jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(p_new)]))
        return (_select(finite, p_new, p), _select(finite, s_new, s), best_p, best_v), None

    v0 = loss(p)
    (p, _, best_p, best_v), _ = lax.scan(step, (p, lbfgs.init(p), p, jnp.where(jnp.isfinite(v0), v0, jnp.inf)),
                                         None, length=steps)
    v = loss(p)
    ok = jnp.isfinite(v) & (v < best_v)
    return _select(ok, p, best_p)
