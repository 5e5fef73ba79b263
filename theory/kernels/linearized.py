"""Linearised (kernel-regression) training dynamics, spec 2.1 claim 6.

Gradient descent on ``L = 1/2 sum_i ||F(x_i) - y_i||^2`` with the kernel frozen at H gives the
residual recursion ``r(t+1) = (I - eta H) r(t)``, so ``r(t) = (I - eta H)^t r(0)``.  With
``H = Q diag(lam) Q^T`` this is ``Q diag((1 - eta lam)^t) Q^T r(0)``, computed here for a list
of steps without forming matrix powers.  The loss bound of claim 3 is ``(1 - eta lam/2)^t L(0)``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from theory import validation as _v
from theory.kernels.ntk_empirical import kernel_matrix, lambda_max

__all__ = ["kernel_regression_residuals", "loss_bound", "default_learning_rate"]


@_v.validate_args(H=(2, 4), r0=2)
def kernel_regression_residuals(H, r0, *, eta: float, steps):
    """Residuals ``(I - eta H)^t r0`` for each t in ``steps``.

    Args:
        H: a kernel (n, n, k, k) or an (n k, n k) matrix.
        r0: initial residuals (n, k).
        eta: learning rate, > 0.
        steps: 1-D list of non-negative integers t.

    Returns:
        Residuals of shape (len(steps), n, k).

    Raises:
        InputError: eta <= 0, shapes that do not match, or bad steps.
    """
    eta = _v.check_positive("eta", eta)
    H = jnp.asarray(H)
    K = kernel_matrix(H) if H.ndim == 4 else H
    r0 = jnp.asarray(r0, K.dtype)
    n, k = r0.shape
    if K.shape != (n * k, n * k):
        raise _v.InputError(f"H of shape {H.shape} does not match r0 of shape {r0.shape}")
    steps = np.asarray(steps)
    if steps.ndim != 1 or np.any(steps < 0) or np.any(steps != np.round(steps)):
        raise _v.InputError("steps must be a 1-D list of non-negative integers")
    lam, Q = jnp.linalg.eigh((K + K.T) / 2)
    coef = Q.T @ r0.reshape(-1)
    decay = (1 - eta * lam)[None, :] ** jnp.asarray(steps, K.dtype)[:, None]
    return ((decay * coef[None]) @ Q.T).reshape(len(steps), n, k)


@_v.validate_args(loss0=0, eta=0, lam=0, steps="array")
def loss_bound(loss0, *, eta: float, lam: float, steps):
    """Claim 3: ``(1 - eta lam / 2)^t L(0)`` for each t in ``steps``.

    Args:
        loss0: the loss at t = 0; eta: learning rate; lam: ``lambda_min(H*)``; steps: (q,) steps.

    Returns:
        A NumPy array of shape (q,).
    """
    return float(loss0) * (1 - eta * lam / 2) ** np.asarray(steps, float)


@_v.validate_args(H_star=(2, 4))
def default_learning_rate(H_star, *, fraction: float = 0.5) -> float:
    """``eta = fraction / ||H*||_2`` (spec 2.1: a constant step of order 1/||H*||_2).

    Args:
        H_star: a kernel (n, n, k, k) or an (n k, n k) matrix; fraction: the multiple of 1/||H*||_2.

    Returns:
        The learning rate, a float.
    """
    return float(fraction / lambda_max(H_star))
