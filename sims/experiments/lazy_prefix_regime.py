"""Where lazy-prefix's rate claims apply, and the movements at matched progress.

The rule is fixed in ``docs/verdicts.md`` (section "lazy-prefix") before the default grid's
re-run was read:

- **Regime.** The stylized models describe a prefix that dominates the softmax. An (arm, m)
  is in the long-prefix regime when the mean over its seeds of ``prefix_attention_share`` (the
  share of layer 0's attention on the prefix rows at init,
  :func:`theory.transformer.lazy.prefix_attention_share`) is at least :data:`REGIME_SHARE`.
- **Matched progress.** With a fixed step budget the cells get different distances, so each
  movement is divided by the progress it is first order in (:data:`MATCHED`): the output
  change ``||F(T) - F(0)|| / ||Y||`` for the kernel movement, the parameter movement and the
  linearisation gap, and the absolute parameter displacement ``||theta(T) - theta_0||`` for the
  kernel movement (its first-order coefficient).
- **Local slopes** between neighbouring m (:func:`local_slopes`) show whether the rate settles
  inside the regime; the figure draws them with the regime boundary.

Pure functions of ``(cell, arrays)`` pairs; the verdict (:mod:`sims.experiments.lazy_prefix_verdict`)
and the figure (``figures/lazy_prefix.py``) both read the rule from here.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import numpy as np

from theory.stats import SlopeFit, fit_loglog_slope

__all__ = ["REGIME_SHARE", "MIN_REGIME_M", "Quantity", "MATCHED", "tuning", "shares", "regime_ms", "displacement", "points",
           "values", "local_slopes"]

REGIME_SHARE = 0.5  # the prefix holds at least as much of layer 0's attention as the input tokens
#: In-regime m a rate is judged on: the three distinct m every rate claim of the project needs
#: (``need_distinct("m", n=3)`` of the sweep); with two, a slope cannot be told from curvature.
MIN_REGIME_M = 3


class Quantity(NamedTuple):
    """A movement at matched progress: ``value(cell, arrays)`` and what it is, in words."""

    name: str
    label: str
    value: Callable[[dict, dict], float]


def displacement(cell, arrays) -> float:
    """``||theta(T) - theta_0||`` of a direct prefix: the rms row movement times sqrt(rows).

    The rows are the key and value rows of every layer, ``n_direct_prefix_params / d``.
    NaN for adapters that are not a direct prefix (their ``rms_row_movement`` is NaN).
    """
    rows = float(arrays["n_direct_prefix_params"]) / float(cell["d"])
    return float(arrays["rms_row_movement"]) * math.sqrt(rows)


def _per_output(key):
    return lambda c, a: float(a[key]) / float(a["output_change"])


MATCHED = (
    Quantity("kernel_change", "kernel movement per unit of output change", _per_output("kernel_change")),
    Quantity("param_change", "parameter movement per unit of output change", _per_output("param_change")),
    Quantity("lin_gap", "linearisation gap per unit of output change", _per_output("lin_gap")),
    Quantity("kernel_per_displacement", "kernel movement per unit of parameter displacement ||theta(T)-theta_0||",
             lambda c, a: float(a["kernel_change"]) / displacement(c, a)),
)


def tuning(results, arm):
    """``(ms, by_m)``: the sorted m of ``arm``'s tuning cells and ``{m: [(cell, arrays), ...]}``."""
    rows = [(c, a) for c, a in results if c.get("role") == "tune" and c.get("arm") == arm]
    ms = sorted({c["m"] for c, _ in rows})
    return ms, {m: [(c, a) for c, a in rows if c["m"] == m] for m in ms}


def shares(by_m) -> dict:
    """``{m: mean over seeds of prefix_attention_share}`` (NaN where a cell lacks it)."""
    return {m: float(np.mean([float(a.get("prefix_attention_share", np.nan)) for _, a in pairs]))
            for m, pairs in by_m.items()}


def regime_ms(ms, by_m) -> list:
    """The m of the grid in the long-prefix regime (mean share >= :data:`REGIME_SHARE`)."""
    share = shares(by_m)
    return [m for m in ms if share[m] >= REGIME_SHARE]


def points(ms, by_m, quantity: Quantity):
    """``(x, y)``: one point per (m, seed) cell over ``ms``, ``y = quantity.value(cell, arrays)``."""
    x, y = [], []
    for m in ms:
        for c, a in by_m[m]:
            x.append(float(m))
            y.append(quantity.value(c, a))
    return np.asarray(x), np.asarray(y)


def values(ms, by_m, quantity: Quantity):
    """``(ms, Y, used)``: ``Y[i, j] = quantity.value`` of the j-th seed at ``ms[i]``, over the
    seeds present at every m of ``ms`` (a partial run keeps only its complete seeds), and the
    ``(cell, arrays)`` pairs used."""
    common = sorted(set.intersection(*({c["seed"] for c, _ in by_m[m]} for m in ms))) if ms else []
    used = [[next((c, a) for c, a in by_m[m] if c["seed"] == s) for s in common] for m in ms]
    Y = [[quantity.value(c, a) for c, a in row] for row in used]
    return list(ms), Y, [pair for row in used for pair in row]


def local_slopes(ms, by_m, quantity: Quantity) -> list[tuple[float, float, SlopeFit | None]]:
    """``(m_lo, m_hi, fit)`` for each pair of neighbouring m: the log-log OLS slope over the two
    m's seeds (the log-ratio of their geometric means) with its 95% interval; ``fit`` is None
    where a value is not positive and finite."""
    out = []
    for lo, hi in zip(ms[:-1], ms[1:]):
        x, y = points([lo, hi], by_m, quantity)
        ok = bool(np.all(np.isfinite(y) & (y > 0)))
        out.append((float(lo), float(hi), fit_loglog_slope(x, y) if ok else None))
    return out
