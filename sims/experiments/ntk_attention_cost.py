"""Cost of prefix attention vs NTK-Attention as the prefix grows (spec section 4): a benchmark.

Per cell (m, feature): one input ``X`` (L x d), a prefix ``P`` (m x d), weights ``~ N(0, 1/d)``.

- time: best of ``repeats`` calls after one warm-up (compilation excluded, reported apart) of
  exact prefix attention ``prefix_attention(X, P, W_Q, W_K, W_V)`` and of NTK-Attention from
  the summary ``(Z, k)``; the one-off cost of computing the summary is reported too.  Prefix
  attention projects P at every call (O(m d^2), as the toolkit's definition does); the time of
  that projection alone is recorded as ``t_project``, so the attention part can be read off.
- memory: the stored state, ``2 m d`` numbers (prefix keys and values) against ``r d + r``
  (summary), and XLA's own accounting of each compiled forward pass
  (``memory_analysis()``: arguments + temporaries + outputs).
- predicted crossover from multiply-add counts (:func:`theory.ntk_attn.bounds.flop_counts`)
  against the measured one: the smallest m of the grid from which prefix attention is slower.

Timings are measurements of this machine, never test assertions.
"""

from __future__ import annotations

import dataclasses
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from sims.core.checks import COUNT, DRAWS, Count, check_ranges
from sims.core.experiment import Experiment, VerdictRow, register
from sims.core.verdicts import band_row, cell_ids, exact_row
from sims.experiments.common import cell_dtype, option as _f
from theory.ntk_attn.feature_maps import feature_dim
from theory.ntk_attn._forward import default_chunk, forward_unchecked_jit, summary_unchecked
from theory.ntk_attn.ntk_attention import ntk_attention, prefix_summary
from theory.ntk_attn.bounds import break_even_length, flop_counts, ntk_parameter_count, prefix_parameter_count
from theory.prefix_attention import prefix_attention_jit, prefix_attention
from theory.streaming import LANES

FEATURES = ("taylor", "elu")


@dataclasses.dataclass(frozen=True)
class NTKAttentionCostConfig:
    m: tuple[int, ...] = _f(tuple(4**i for i in range(2, 11)), "Prefix lengths (16 .. 2^20).", COUNT)
    feature: tuple[str, ...] = _f(FEATURES, "Feature maps.", choices=FEATURES)
    g: int = _f(2, "Taylor degree (r = C(d + g, g)).", COUNT)
    d: int = _f(64, "Token dimension d = d_k = d_v.", COUNT)
    L: int = _f(128, "Input tokens.", COUNT)
    repeats: int = _f(5, "Timed calls per measurement (best kept).", COUNT)
    chunk_size: int = _f(0, "Stream prefix attention in chunks of this many rows (0: dense).", Count(ge=0))
    seeds: int = _f(1, "Draws per cell.", DRAWS)

    def __post_init__(self):
        check_ranges(self)


def cells(cfg: NTKAttentionCostConfig) -> list[dict]:
    return [{"m": int(m), "feature": f, "g": cfg.g, "d": cfg.d, "L": cfg.L, "repeats": cfg.repeats,
             "chunk_size": cfg.chunk_size, "seed": s}
            for f in cfg.feature for m in sorted(set(cfg.m)) for s in range(cfg.seeds)]


def _time(fn, repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return first, best


def _xla_bytes(jitted, *args, **static) -> float:
    try:
        ma = jitted.lower(*args, **static).compile().memory_analysis()
        return float(ma.argument_size_in_bytes + ma.temp_size_in_bytes + ma.output_size_in_bytes)
    except Exception:  # pragma: no cover - backends without memory analysis
        return float("nan")


def run(cell, *, key):
    dtype = jnp.dtype(cell.get("dtype", "float64"))
    m, d, L, feature = cell["m"], cell["d"], cell["L"], cell["feature"]
    g = cell["g"] if feature == "taylor" else None
    kx, kp, kw = jax.random.split(key, 3)
    X = jax.random.normal(kx, (L, d), dtype)
    P = jax.random.normal(kp, (m, d), dtype)
    W_Q, W_K, W_V = (jax.random.normal(k, (d, d), dtype) / math.sqrt(d) for k in jax.random.split(kw, 3))
    chunk = cell["chunk_size"] or None
    reps = cell["repeats"]
    r = feature_dim(d, feature=feature, g=g)

    # Validate once through the public functions, then time the jitted kernels they call (the
    # eager input checks copy P to the host, an O(m d) cost that is not part of either method).
    S = prefix_summary(P, W_K, W_V, feature=feature, g=g)
    prefix_attention(X, P, W_Q, W_K, W_V, chunk_size=chunk)
    ntk_attention(X, S, W_Q, W_K, W_V, feature=feature, g=g)
    sum_chunk = default_chunk(r)
    t_summary_first, t_summary = _time(lambda: summary_unchecked(P, W_K, W_V, feature, g, sum_chunk), reps)
    t_prefix_first, t_prefix = _time(lambda: prefix_attention_jit(X, P, W_Q, W_K, W_V, False, chunk), reps)
    project = jax.jit(lambda P, W_K, W_V: (P @ W_K, P @ W_V))
    _, t_project = _time(lambda: project(P, W_K, W_V), reps)
    t_ntk_first, t_ntk = _time(lambda: forward_unchecked_jit(X, S, W_Q, W_K, W_V, feature, g, False, False), reps)
    flops = flop_counts(L, m, d, d, r)
    item = jnp.dtype(dtype).itemsize
    return {
        "t_prefix": np.asarray(t_prefix), "t_project": np.asarray(t_project), "t_ntk": np.asarray(t_ntk),
        "t_summary": np.asarray(t_summary),
        "compile_prefix": np.asarray(t_prefix_first - t_prefix), "compile_ntk": np.asarray(t_ntk_first - t_ntk),
        "compile_summary": np.asarray(t_summary_first - t_summary),
        "state_bytes_prefix": np.asarray(float(prefix_parameter_count(m, d) * item)),
        "state_bytes_ntk": np.asarray(float(ntk_parameter_count(r, d) * item)),
        "xla_bytes_prefix": np.asarray(_xla_bytes(prefix_attention_jit, X, P, W_Q, W_K, W_V, causal=False,
                                                  chunk_size=chunk)),
        "xla_bytes_ntk": np.asarray(_xla_bytes(forward_unchecked_jit, X, S, W_Q, W_K, W_V, feature=feature, g=g,
                                               causal=False, abs_k=False)),
        "flops_prefix": np.asarray(float(flops["prefix"])), "flops_ntk": np.asarray(float(flops["ntk"])),
        "r": np.asarray(r),
    }


def estimate_bytes(cell) -> int:
    m, d, L = cell["m"], cell["d"], cell["L"]
    r = feature_dim(d, feature=cell["feature"], g=cell["g"] if cell["feature"] == "taylor" else None)
    chunk = cell["chunk_size"] or m
    # Prefix attention streams `chunk` rows of logits and the summary default_chunk(r) rows of
    # features at a time, LANES chunks per loop step.
    item = cell_dtype(cell).itemsize
    return item * (4 * m * d + 2 * L * (min(LANES * chunk, m) + L) + LANES * default_chunk(r) * r + 2 * r * d) + (64 << 20)


def _crossover(ms, slower):
    """Smallest m of the grid from which ``slower`` holds for every larger m (None if never)."""
    for i, m in enumerate(ms):
        if all(slower[i:]):
            return m
    return None


#: Tolerance of the time crossover against the multiply-add prediction, in log2 m: a factor of
#: four either way (docs/verdicts.md).
CROSSOVER_LOG2_TOL = 2.0


def _crossing(ms, f):
    """m from which ``f > 0`` for good, interpolated linearly in log m between grid points; 0 when
    ``f > 0`` on the whole grid (below it), inf when not for good at the largest m (above it)."""
    top = _crossover(ms, list(f > 0))
    if top is None:
        return math.inf
    i = ms.index(top)
    if i == 0:
        return 0.0
    x0, x1 = math.log(ms[i - 1]), math.log(ms[i])
    return math.exp(x0 - f[i - 1] * (x1 - x0) / (f[i] - f[i - 1]))


def measured_crossover(ms, t_prefix, t_ntk):
    """The m from which prefix attention is slower for good, with a bracket for timing noise.

    The estimate is the crossing of ``log(t_prefix / t_ntk)`` through 0, interpolated in log m
    between grid points (clipped to the grid's ends when it lies outside).  NTK-Attention's time
    has no m axis, so the spread ``delta = log(max t_ntk / min t_ntk)`` over the grid measures the
    timing noise; the bracket is the crossing through ``-delta`` (low) and ``+delta`` (high), 0 or
    inf when it lies outside the grid.  Returns ``(estimate, low, high, delta)``.
    """
    log_ratio = np.log(np.asarray(t_prefix, float) / np.asarray(t_ntk, float))
    delta = float(np.log(np.max(t_ntk) / np.min(t_ntk)))
    est = min(max(_crossing(ms, log_ratio), ms[0]), ms[-1])
    low, high = _crossing(ms, log_ratio + delta), _crossing(ms, log_ratio - delta)
    return est, min(low, est), max(high, est), delta


def crossover_id(feature: str) -> str:
    """The id of ``feature``'s time-crossover row (``"taylor-1"``); the figure
    (``figures/ntk_attention_cost.py``) draws the crossover of the row of this id."""
    return f"{feature}-1"


def verdict(cfg: NTKAttentionCostConfig, results) -> list[VerdictRow]:
    """Per feature: ``F-1`` time crossover against the multiply-add count, ``F-2`` forward-pass
    memory, ``F-3`` stored state and ``F-4`` parameter break-even (two checks of the count formulas)."""
    rows = []
    for feature in cfg.feature:
        res = sorted(((c, a) for c, a in results if c["feature"] == feature), key=lambda ca: ca[0]["m"])
        if not res:
            continue
        ids = cell_ids(res)
        ms = [c["m"] for c, _ in res]
        r = int(res[0][1]["r"])
        t_p = [float(a["t_prefix"]) for _, a in res]
        t_n = [float(a["t_ntk"]) for _, a in res]
        # Multiply-adds: L(m + L)(d_k + d_v) > L L (d_k + d_v) + L r (d_v + 2)  <=>  m > r (d + 2) / (2 d).
        m_pred = r * (cfg.d + 2) / (2 * cfg.d)
        est, lo, hi, delta = measured_crossover(ms, t_p, t_n)
        timings = "; ".join(f"m={m}: {p * 1e3:.3g} ms vs {n * 1e3:.3g} ms" for m, p, n in zip(ms, t_p, t_n))
        log2 = lambda v: math.log2(v) if v > 0 else -math.inf  # noqa: E731
        rows.append(band_row(
            crossover_id(feature), f"{feature} (r={r}): time crossover m (prefix attention slower from there on), log2",
            log2(est), log2(lo), log2(hi), target=math.log2(m_pred), tol=CROSSOVER_LOG2_TOL, level=None,
            quantity="log2 of the measured crossover m (interpolated in log m); bracket: crossings with the "
                     "timing ratio shifted by the NTK time's spread over m (its noise), open outside the grid",
            tol_why="a factor of four either way: multiply-add counts ignore per-call overhead, memory traffic "
                    "and vector widths, which move the time crossover by a constant factor",
            cells=ids, detail=f"predicted m = r (d + 2)/(2 d) = {m_pred:.4g}; timing noise (NTK time's spread) "
                              f"x{math.exp(delta):.3g}; timings (prefix vs NTK): {timings}"))
        x_p, x_n = [float(a["xla_bytes_prefix"]) for _, a in res], [float(a["xla_bytes_ntk"]) for _, a in res]
        growth = x_n[-1] / x_n[0] - 1
        rows.append(exact_row(
            f"{feature}-2", f"{feature}: forward-pass memory (XLA) constant in m for NTK-Attention", growth,
            target=0.0, relation="<=", cells=ids, quantity="NTK-Attention's XLA bytes at the largest m / smallest m - 1",
            tol_why="exact: no array of the NTK forward pass has an m axis",
            detail=f"prefix {x_p[0]:.3g} -> {x_p[-1]:.3g} B (grows with m); NTK {x_n[0]:.3g} -> {x_n[-1]:.3g} B"))
        big = res[-1][1]
        state_ratio = float(big["state_bytes_prefix"]) / float(big["state_bytes_ntk"])
        want = 2 * ms[-1] * cfg.d / (r * cfg.d + r)
        rows.append(exact_row(
            f"{feature}-3", f"{feature}: stored state 2 m d vs r d + r (count formulas, not a measurement)",
            state_ratio, target=want, tol=1e-9 * want, relation="within", cells=ids,
            quantity=f"prefix / summary stored numbers at m = {ms[-1]}",
            tol_why="an identity of the count functions: a check of the formulas, no evidence beyond them"))
        m_star = break_even_length(r, cfg.d)
        lo_n = prefix_parameter_count(max(1, math.floor(m_star)), cfg.d)
        hi_n = prefix_parameter_count(math.ceil(m_star), cfg.d)
        n_sum = ntk_parameter_count(r, cfg.d)
        rows.append(exact_row(
            f"{feature}-4", f"{feature}: parameter break-even m = (r d + r)/(2 d) (count formulas)",
            float(n_sum), target=(lo_n + hi_n) / 2, tol=(hi_n - lo_n) / 2, relation="within", cells=ids,
            quantity="r d + r, against 2 m d at floor/ceil of the break-even m",
            tol_why="an identity of the count functions: a check of the formulas, no evidence beyond them",
            detail=f"m* = {m_star:.4g}; 2 m d at floor/ceil: {lo_n} / {hi_n}"))
    return rows


EXPERIMENT = register(Experiment(
    name="ntk-attention-cost",
    summary="Benchmark: time and memory of prefix attention vs NTK-Attention as m grows; measured crossover m.",
    config=NTKAttentionCostConfig,
    cells=cells,
    run=run,
    verdict=verdict,
    estimate_bytes=estimate_bytes,
    sweep_fields=("m", "feature"),
    min_distinct={"m": 2},
    examples=("sims run ntk-attention-cost", "sims run ntk-attention-cost --feature elu --m 1e3 --m 1e5"),
))
