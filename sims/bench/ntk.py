"""Benchmark: structured vs autodiff empirical NTK, time and peak memory as m grows.

Time is the best of ``repeats`` calls after one warm-up call (compilation excluded and reported
separately).  Memory is XLA's own accounting of the compiled program
(``compiled.memory_analysis()``: temporaries + outputs), exact for the program and free of
allocator noise; the inputs, the prefix P itself (m d numbers) among them, are excluded since
both implementations share them.  The autodiff reference is skipped, with the reason, where its Jacobians
would exceed the memory budget.

This is a measurement, never a test: no test asserts on these numbers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

import theory as T
from sims.bench.common import best_time, jacobian_over_budget, model_inputs, xla_memory
from theory.kernels import ntk_empirical as _ne
from theory.kernels.ntk_empirical import autodiff_forward_ntk
from theory.streaming import DEFAULT_CHUNK

__all__ = ["bench_ntk", "format_table"]


def bench_ntk(*, models=None, n=128, d=16, k=1, ms=(1e3, 1e4, 1e5, 1e6),
              repeats=3, chunk_size=DEFAULT_CHUNK, memory_budget=_ne.DEFAULT_MEMORY_BUDGET, dtype=jnp.float64,
              key=None, progress=None):
    """Measure both NTKs for each model and m; returns a list of row dicts."""
    key = jax.random.key(0) if key is None else key
    rows = []
    for name in models or T.model_names():  # default: every registered model
        for m in ms:
            m = int(m)
            model, kk, P, frozen, U = model_inputs(name, m=m, n=n, d=d, k=k, dtype=dtype, key=key)
            row = {"model": name, "n": n, "d": d, "k": kk, "m": m, "dtype": jnp.dtype(dtype).name}
            compiled = model.structured_ntk.lower(P, frozen, U, None, chunk_size).compile()
            row["structured_mem_bytes"] = xla_memory(compiled)["work_bytes"]
            first, best = best_time(lambda: T.structured_ntk(name, P, frozen, U, chunk_size=chunk_size), repeats)
            row["structured_first_s"], row["structured_s"] = first, best
            over = jacobian_over_budget(n=n, k=kk, m=m, d=d, dtype=dtype, budget=memory_budget)
            if over:
                row.update(autodiff_s=None, autodiff_first_s=None, autodiff_mem_bytes=None,
                           autodiff_note=f"skipped: {over}")
            else:
                compiled = autodiff_forward_ntk.lower(model.forward, P, frozen, U, None).compile()
                row["autodiff_mem_bytes"] = xla_memory(compiled)["work_bytes"]
                first, best = best_time(lambda: T.autodiff_model_ntk(name, P, frozen, U, memory_budget=memory_budget),
                                    repeats)
                row["autodiff_first_s"], row["autodiff_s"] = first, best
                row["autodiff_note"] = ""
            row["speedup"] = (row["autodiff_s"] / row["structured_s"]) if row.get("autodiff_s") else None
            rows.append(row)
            if progress is not None:
                progress(row)
    return rows


def _fmt(x, unit=""):
    if x is None:
        return "-"
    if unit == "MiB":
        return f"{x / 2**20:.1f}"
    return f"{x:.3g}"


def format_table(rows) -> str:
    """A markdown table of :func:`bench_ntk` rows."""
    head = ("| model | m | structured s | autodiff s | speedup | structured MiB | autodiff MiB | note |\n"
            "|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['m']:.0e} | {_fmt(r['structured_s'])} | {_fmt(r.get('autodiff_s'))} | "
            f"{_fmt(r.get('speedup'))} | {_fmt(r['structured_mem_bytes'], 'MiB')} | "
            f"{_fmt(r.get('autodiff_mem_bytes'), 'MiB')} | {r.get('autodiff_note', '')} |"
        )
    return "\n".join(lines)
