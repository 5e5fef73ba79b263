"""The project's statistics, in one place: thin layers over :mod:`scipy.stats`.

Every interval a verdict prints comes from here:

- :func:`fit_loglog_slope`: log-log OLS slope over (x, seed) points, ``linregress`` and its
  t-interval (a rate claim "X decays like m^-1/2");
- :func:`fit_line`: the same OLS slope on linear axes (e.g. log10 error against a degree);
- :func:`mean_ci`, :func:`t_half_width`: the t-interval of a mean (``t.interval``);
- :func:`welch_ci`: the Welch interval of a difference of means
  (``ttest_ind(equal_var=False).confidence_interval()``);
- :func:`wilson_ci`: the Wilson interval of a proportion (``binomtest(...).proportion_ci``);
- :func:`bootstrap_ci`: a percentile bootstrap interval of a statistic (``bootstrap``), seeded;
- :func:`bootstrap_groups`, :func:`percentile_ci`: the statistic over independent resamples of
  several groups (one seeded generator), and the percentile interval of any such draws (a
  bootstrap of a derived quantity: a slope across groups, a ratio of two groups).

Each returns numbers only; how a verdict decides from them is :mod:`sims.core.verdicts`.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
from scipy import stats as _st

from theory import validation as _v

__all__ = ["Interval", "SlopeFit", "fit_loglog_slope", "fit_line", "mean_ci", "t_half_width", "welch_ci", "wilson_ci",
           "bootstrap_ci", "bootstrap_groups", "percentile_ci"]


class Interval(NamedTuple):
    """An estimate with its two-sided confidence interval (at the level the caller asked for)."""

    estimate: float
    low: float
    high: float


class SlopeFit(NamedTuple):
    """A fitted log-log slope with its confidence interval ``[low, high]`` at ``level``, and the intercept."""

    slope: float
    low: float  # confidence interval of the slope
    high: float
    intercept: float
    level: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def consistent_with(self, value: float, tol: float = 0.0) -> bool:
        """The interval meets ``[value - tol, value + tol]`` (a weaker test than the verdicts'
        equivalence rule, :func:`sims.core.verdicts.decide_band`)."""
        return self.low <= value + tol and self.high >= value - tol


def _check_level(level) -> float:
    try:
        level = float(level)
    except (TypeError, ValueError):
        raise _v.InputError(f"level must be a number in (0, 1), got {level!r}") from None
    if not 0.0 < level < 1.0:
        raise _v.InputError(f"level must be in (0, 1), got {level!r}")
    return level


def _real(name: str, a) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise _v.InputError(f"{name} must be a real numeric array, got dtype {a.dtype}")
    return a.astype(float)


def fit_loglog_slope(x, y, *, level: float = 0.95) -> SlopeFit:
    """OLS fit of ``log y = a + b log x`` over every (x, seed) point (``scipy.stats.linregress``).

    Args:
        x: (q,) grid of positive values, at least two distinct.
        y: (q,) or (q, seeds) positive finite measurements.
        level: confidence level in (0, 1).
    Returns:
        :class:`SlopeFit` with the t-interval of the slope on ``n - 2`` degrees of freedom (the
        residual variance of all points, so it widens with the scatter over seeds); with only two
        points the interval is ``(-inf, inf)``.
    Raises:
        InputError: mismatched shapes, fewer than two distinct x, non-positive or non-finite
            values, complex input, or a level outside (0, 1).
    """
    level = _check_level(level)
    x, y = _grid(x, y)
    if not (np.all(np.isfinite(x)) and np.all(x > 0)):
        raise _v.InputError("x must be positive and finite")
    if not (np.all(np.isfinite(y)) and np.all(y > 0)):
        raise _v.InputError("y must be positive and finite")
    if np.unique(x).size < 2:
        raise _v.InputError("x must hold at least two distinct values")
    return _ols(np.log(x), np.log(y), level)


def fit_line(x, y, *, level: float = 0.95) -> SlopeFit:
    """OLS fit of ``y = a + b x`` over every (x, seed) point (``scipy.stats.linregress``), e.g. the
    slope of log10 error in the Taylor degree.

    Args:
        x: (q,) grid of finite values, at least two distinct.
        y: (q,) or (q, seeds) finite measurements.
        level: confidence level in (0, 1).
    Returns:
        :class:`SlopeFit` with the t-interval of the slope on ``n - 2`` degrees of freedom;
        ``(-inf, inf)`` with only two points.
    Raises:
        InputError: mismatched shapes, fewer than two distinct x, non-finite values, complex
            input, or a level outside (0, 1).
    """
    level = _check_level(level)
    x, y = _grid(x, y)
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise _v.InputError("x and y must be finite")
    if np.unique(x).size < 2:
        raise _v.InputError("x must hold at least two distinct values")
    return _ols(x, y, level)


def _grid(x, y) -> tuple[np.ndarray, np.ndarray]:
    """x as (q,) and y as (q, seeds) float arrays, refusing other shapes."""
    x, y = _real("x", x), _real("y", y)
    if y.ndim == 1:
        y = y[:, None]
    if x.ndim != 1 or y.ndim != 2 or y.shape[0] != x.shape[0] or x.shape[0] < 2 or y.shape[1] < 1:
        raise _v.InputError(f"need at least two grid points x (q,) with y (q,) or (q, seeds); "
                            f"got x {x.shape}, y {y.shape}")
    return x, y


def _ols(x: np.ndarray, y: np.ndarray, level: float) -> SlopeFit:
    """linregress over the (x_i, y_ij) points of x (q,) and y (q, seeds), with the slope's t-interval."""
    fit = _st.linregress(np.repeat(x, y.shape[1]), y.reshape(-1))
    dof = y.size - 2
    if dof < 1:
        return SlopeFit(float(fit.slope), float("-inf"), float("inf"), float(fit.intercept), level)
    low, high = _st.t.interval(level, dof, loc=fit.slope, scale=fit.stderr)
    return SlopeFit(float(fit.slope), float(low), float(high), float(fit.intercept), level)


def t_half_width(samples, *, level: float = 0.95) -> float:
    """Half-width of the ``level`` t-interval of the mean of ``samples`` (at least two).

    Args:
        samples: array-like of finite values, flattened.
        level: confidence level in (0, 1).
    Returns:
        ``t_{(1+level)/2, n-1} s / sqrt(n)`` with s the sample standard deviation (ddof 1).
    Raises:
        InputError: fewer than two samples, or a bad level.
    """
    est, low, high = mean_ci(samples, level=level)
    if not np.isfinite(low):
        raise _v.InputError(f"a t-interval needs at least two samples, got {np.asarray(samples).size}")
    return float(high - est)


def mean_ci(samples, *, level: float = 0.95) -> Interval:
    """Mean of ``samples`` and its t-interval (``scipy.stats.t.interval``).

    Args:
        samples: array-like of finite values, flattened (at least one).
        level: confidence level in (0, 1).
    Returns:
        :class:`Interval`; ``(-inf, inf)`` with fewer than two samples, a point when all are equal.
    Raises:
        InputError: no samples, non-finite or complex values, or a bad level.
    """
    level = _check_level(level)
    s = _real("samples", samples).reshape(-1)
    if s.size == 0 or not np.all(np.isfinite(s)):
        raise _v.InputError("samples must be a non-empty array of finite values")
    mean = float(s.mean())
    if s.size < 2:
        return Interval(mean, float("-inf"), float("inf"))
    se = float(_st.sem(s))
    if se == 0.0:
        return Interval(mean, mean, mean)
    low, high = _st.t.interval(level, s.size - 1, loc=mean, scale=se)
    return Interval(mean, float(low), float(high))


def welch_ci(a, b, *, level: float = 0.95) -> Interval:
    """``mean(a) - mean(b)`` for independent samples with its Welch t-interval.

    ``scipy.stats.ttest_ind(a, b, equal_var=False).confidence_interval(level)``.

    Args:
        a, b: array-likes of finite values, flattened.
        level: confidence level in (0, 1).
    Returns:
        :class:`Interval`; ``(-inf, inf)`` with fewer than two samples on either side, a point when
        both sides are constant.
    Raises:
        InputError: empty, non-finite or complex samples, or a bad level.
    """
    level = _check_level(level)
    a, b = _real("a", a).reshape(-1), _real("b", b).reshape(-1)
    for name, s in (("a", a), ("b", b)):
        if s.size == 0 or not np.all(np.isfinite(s)):
            raise _v.InputError(f"{name} must be a non-empty array of finite values")
    diff = float(a.mean() - b.mean())
    if a.size < 2 or b.size < 2:
        return Interval(diff, float("-inf"), float("inf"))
    if a.var() == 0.0 and b.var() == 0.0:
        return Interval(diff, diff, diff)
    ci = _st.ttest_ind(a, b, equal_var=False).confidence_interval(confidence_level=level)
    return Interval(diff, float(ci.low), float(ci.high))


def wilson_ci(k: int, n: int, *, level: float = 0.95) -> Interval:
    """The proportion ``k / n`` with its Wilson score interval (``binomtest(k, n).proportion_ci``).

    Args:
        k: successes, 0 <= k <= n; n: trials, n >= 1.
        level: confidence level in (0, 1).
    Returns:
        :class:`Interval` of the proportion.
    Raises:
        InputError: counts out of range, or a bad level.
    """
    level = _check_level(level)
    k, n = _v.check_count("k", k, minimum=0), _v.check_count("n", n)
    if k > n:
        raise _v.InputError(f"k ({k}) must be <= n ({n})")
    ci = _st.binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
    return Interval(k / n, float(ci.low), float(ci.high))


def bootstrap_ci(data, statistic: Callable, *, level: float = 0.95, resamples: int = 2000, seed: int = 0,
                 axis: int = 0) -> Interval:
    """A percentile bootstrap interval of ``statistic`` over ``axis`` of ``data`` (``scipy.stats.bootstrap``).

    Args:
        data: an array, or a tuple of arrays resampled together (paired) along ``axis``.
        statistic: ``statistic(*samples, axis=-1)`` vectorised over the last axis, as scipy wants.
        level: confidence level in (0, 1); resamples: bootstrap resamples; seed: its generator seed
            (same seed, same interval).
    Returns:
        :class:`Interval` with ``estimate = statistic(data)``.
    Raises:
        InputError: a bad level or fewer than two observations.
    """
    level = _check_level(level)
    arrays = tuple(_real("data", d) for d in (data if isinstance(data, tuple) else (data,)))
    if arrays[0].shape[axis] < 2:
        raise _v.InputError(f"a bootstrap needs at least two observations along axis {axis}")
    moved = tuple(np.moveaxis(a, axis, -1) for a in arrays)
    est = np.asarray(statistic(*moved, axis=-1))
    res = _st.bootstrap(moved, statistic, confidence_level=level, n_resamples=resamples, method="percentile",
                        paired=len(moved) > 1, vectorized=True, axis=-1, rng=np.random.default_rng(seed))
    low, high = np.asarray(res.confidence_interval.low), np.asarray(res.confidence_interval.high)
    if est.ndim == 0:
        return Interval(float(est), float(low), float(high))
    return Interval(est, low, high)


def bootstrap_groups(groups, statistic: Callable, *, resamples: int = 2000, seed: int = 0) -> np.ndarray:
    """``statistic`` over ``resamples`` independent with-replacement resamples of each group.

    One generator (``numpy.random.default_rng(seed)``) draws the groups in order, so the draws are
    a function of ``seed`` and the groups; a quantity built from several groups (a slope across
    grid points, a ratio of two samples) is then bootstrapped by combining the columns and taking
    :func:`percentile_ci` of the result.

    Args:
        groups: a sequence of K one-dimensional arrays of finite values, each with at least two.
        statistic: ``statistic(v)`` of a (resamples, n_k) array, reducing the last axis.
        resamples: draws per group; seed: the generator's seed.
    Returns:
        (resamples, K) array: column k is ``statistic`` of the resamples of group k.
    Raises:
        InputError: no groups, a group with fewer than two values or a non-finite one.
    """
    arrays = [_real("group", g).reshape(-1) for g in groups]
    if not arrays:
        raise _v.InputError("bootstrap_groups needs at least one group")
    for g in arrays:
        if g.size < 2 or not np.all(np.isfinite(g)):
            raise _v.InputError("each group needs at least two finite values")
    rng = np.random.default_rng(seed)
    return np.stack([np.asarray(statistic(g[rng.integers(0, g.size, (resamples, g.size))])) for g in arrays],
                    axis=1)


def percentile_ci(draws, estimate: float, *, level: float = 0.95) -> Interval:
    """``estimate`` with the percentile interval of ``draws``: their ``(1 - level) / 2`` and
    ``(1 + level) / 2`` quantiles (``numpy.quantile``, linear interpolation).

    Args:
        draws: bootstrap draws of the quantity (flattened, at least one, no NaN; ``inf`` is kept,
            e.g. a ratio whose resampled denominator is 0).
        estimate: the quantity on the data, returned as the interval's estimate.
        level: confidence level in (0, 1).
    Raises:
        InputError: no draws, a NaN draw, or a bad level.
    """
    level = _check_level(level)
    d = _real("draws", draws).reshape(-1)
    if d.size == 0 or np.any(np.isnan(d)):
        raise _v.InputError("draws must be a non-empty array without NaN")
    low, high = np.quantile(d, [0.5 - level / 2, 0.5 + level / 2])
    return Interval(float(estimate), float(low), float(high))
