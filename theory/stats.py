"""Statistics for rate claims: log-log slopes with confidence intervals over seeds.

A claim "X decays like m^{-1/2}" passes when the confidence interval of the fitted log-log
slope contains -1/2, up to a stated tolerance for finite-m corrections
(:meth:`SlopeFit.consistent_with`).  Every rate test in the project also fits a deliberately wrong prediction
and checks that it fails the same way.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import stats as _st

__all__ = ["SlopeFit", "fit_loglog_slope", "mean_ci", "t_half_width"]


class SlopeFit(NamedTuple):
    slope: float
    low: float  # confidence interval of the slope
    high: float
    intercept: float
    level: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def consistent_with(self, value: float, tol: float = 0.0) -> bool:
        """The interval meets ``[value - tol, value + tol]``.

        ``tol`` allows for the systematic finite-m corrections of a local slope (an O(1/m)
        bias can be resolved by a very tight interval over seeds), as convergence-order tests
        allow for higher-order terms; a wrong scaling is still far outside.
        """
        return self.low <= value + tol and self.high >= value - tol


def fit_loglog_slope(x, y, *, level: float = 0.95) -> SlopeFit:
    """OLS fit of ``log y = a + b log x`` over every (x, seed) point.

    ``x``: (q,) grid; ``y``: (q,) or (q, seeds) positive measurements.  The interval is the
    t-interval of the OLS slope with the residual variance of all points, so it widens with the
    scatter over seeds.
    """
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    if y.ndim == 1:
        y = y[:, None]
    if y.shape[0] != x.shape[0] or x.shape[0] < 2:
        raise ValueError(f"need at least two grid points with matching y; got x {x.shape}, y {y.shape}")
    if np.any(~np.isfinite(y)) or np.any(y <= 0) or np.any(x <= 0):
        raise ValueError("fit_loglog_slope needs positive finite x and y")
    lx = np.repeat(np.log(x), y.shape[1])
    ly = np.log(y).reshape(-1)
    n = lx.size
    xm = lx.mean()
    sxx = np.sum((lx - xm) ** 2)
    b = np.sum((lx - xm) * (ly - ly.mean())) / sxx
    a = ly.mean() - b * xm
    dof = n - 2
    if dof < 1:
        return SlopeFit(float(b), float("-inf"), float("inf"), float(a), level)
    resid = ly - (a + b * lx)
    se = np.sqrt(np.sum(resid**2) / dof / sxx)
    t = _st.t.ppf(0.5 + level / 2, dof)
    return SlopeFit(float(b), float(b - t * se), float(b + t * se), float(a), level)


def t_half_width(samples, *, level: float = 0.95) -> float:
    """Half-width of the ``level`` t-interval of the mean of ``samples`` (at least two).

    Args:
        samples: array-like of finite values, flattened.
        level: confidence level in (0, 1).

    Returns:
        ``t_{(1+level)/2, n-1} s / sqrt(n)`` with s the sample standard deviation (ddof 1).

    Raises:
        ValueError: fewer than two samples.
    """
    s = np.asarray(samples, float).reshape(-1)
    if s.size < 2:
        raise ValueError(f"a t-interval needs at least two samples, got {s.size}")
    return float(_st.t.ppf(0.5 + level / 2, s.size - 1) * s.std(ddof=1) / np.sqrt(s.size))


def mean_ci(samples, *, level: float = 0.95):
    """Mean of ``samples`` and its t-interval: ``(mean, low, high)``.

    With fewer than two samples the interval is ``(-inf, inf)``.
    """
    s = np.asarray(samples, float).reshape(-1)
    mean = float(s.mean())
    if s.size < 2:
        return mean, float("-inf"), float("inf")
    half = t_half_width(s, level=level)
    return mean, mean - half, mean + half
