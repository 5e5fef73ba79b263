"""Benchmark suite: the structured NTK against autodiff and neural-tangents, the matmul roofline,
a gradient-descent step, and the largest prefix that fits a memory budget (``sims bench suite``).

Everything is measured in one run so the ratios in a row share the machine's state.

- **NTK** (:func:`bench_ntk_impls`): for each model, n and m, the same kernel ``(n, n, k, k)`` by
  ``structured`` (:func:`theory.structured_ntk`'s jitted kernel), ``autodiff`` (``vmap(jacrev)``
  contraction) and neural-tangents' ``nt-jc`` (JACOBIAN_CONTRACTION), ``nt-nvp``
  (NTK_VECTOR_PRODUCTS) and ``nt-sd`` (STRUCTURED_DERIVATIVES through the experimental shim of
  :mod:`sims.bench.ntcompat`; its result is checked like every other).  Time: the best of
  ``repeats`` calls of the compiled program after a warm-up (compilation reported apart; input
  validation excluded for every implementation), the implementations of a cell timed
  round-robin so that their ratio sees the same load on a shared machine (each quick call right
  after an untimed one of its own, see :func:`bench_ntk_impls`).  Memory: XLA's accounting of the compiled
  program (``memory_analysis``): ``work`` = temporaries + outputs, ``args`` = its inputs (P,
  frozen, U).  ``rel_err``: max |H - H_structured| / max |H_structured|.  An implementation is
  skipped, with the reason, when its Jacobians or XLA's figure exceed the memory budget, or
  when its time extrapolated from the previous m exceeds ``max_seconds``.
- **Roofline** (:func:`gemm_rate`, :func:`structured_flops`): the float64 GEMM rate measured on
  this machine (square N x N, best of before and after the suite, and the shape of the
  structured kernel's own GEMM), against the structured NTK's achieved rate, counted
  analytically (matmuls, exponentials and products; the GEMM dominates once n >> d).  A square
  GEMM is also timed in every round of every cell ("same time"), so the fraction of the GEMM
  rate can be read against the load the kernel itself saw.
- **Floor** (:func:`exp_pass`, :func:`symmetric_gram_flops`): a lower bound on the time of any
  implementation that evaluates the kernel through its Gram factorisation, as the structured
  NTK and neural-tangents' structured derivatives both do: the logits and exponentials (timed
  alone in the same rounds) plus the symmetric Gram's w(w+1) flops per row at the best square
  GEMM rate.  ``best nt / floor`` is then the largest speed-up over neural-tangents that such an
  implementation could reach on this machine.  The exponential pass is a call of its own, so
  the floor includes one call's dispatch overhead (a fraction of a millisecond on a CPU): below
  a few milliseconds it can exceed the structured NTK's own time and means nothing.
- **Gradient-descent step** (:func:`sims.bench.gd.bench_gd_step`): parameter space (``grad``:
  ``value_and_grad`` of the squared loss, as in ``sims run convergence``; ``nt-linearize``:
  the same step on ``nt.linearize(f, P0)``) and function space (``r <- r - eta H r`` with H
  from ``structured``, ``autodiff`` or ``nt-jc`` followed by ``nt.predict.gradient_descent_mse``).
- **Largest m in a budget** (:func:`max_m_in_budget`): XLA's bytes (args + temporaries +
  outputs) of each implementation compiled at two m, fitted as ``a + b m``; m_max =
  (budget - a) / b.  Nothing is run for this table, only compiled.

These are measurements, never tests: no test asserts on the numbers.
"""

from __future__ import annotations

import functools
import time
from typing import Callable

import jax
import jax.numpy as jnp

import theory as T
from theory.kernels import ntk_empirical as _ne
from theory.kernels.ntk_empirical import autodiff_forward_ntk
from sims.bench.common import (
    NT_IMPLS,
    Skip,
    describe_machine,
    exp_pass,
    gemm_rate,
    jacobian_over_budget,
    gram_width,
    machine_info,
    model_inputs,
    note_failure,
    nt_unusable,
    recorded,
    structured_flops,
    symmetric_gram_flops,
    xla_memory,
)
from sims.bench.gd import GD_IMPLS, bench_gd_step
from sims.bench.ntcompat import nt_model_ntk_fn
from theory.streaming import DEFAULT_CHUNK

__all__ = ["IMPLS", "GD_IMPLS", "machine_info", "describe_machine", "gemm_rate", "structured_flops", "bench_ntk_impls", "bench_gd_step",
           "max_m_in_budget", "run_suite", "format_suite"]

IMPLS = ("structured", "autodiff", "nt-jc", "nt-nvp", "nt-sd")


@functools.lru_cache(maxsize=None)
def _jitted_ntk(impl: str, model, chunk_size: int):
    """``jax.jit`` of :func:`_ntk_fn`, one per (implementation, model, chunk) so compilations are reused."""
    return jax.jit(_ntk_fn(impl, model, chunk_size))


def _ntk_fn(impl: str, model, chunk_size: int) -> Callable:
    """A jittable ``(P, frozen, U) -> (n, n, k, k)`` for one implementation."""
    if impl == "structured":
        return lambda P, fr, U: model.structured_ntk(P, fr, U, None, chunk_size)
    if impl == "autodiff":
        return lambda P, fr, U: autodiff_forward_ntk(model.forward, P, fr, U, None)
    if impl in NT_IMPLS:
        fn = nt_model_ntk_fn(model, implementation=NT_IMPLS[impl])
        return lambda P, fr, U: fn(P, fr, U, None)
    raise ValueError(f"unknown implementation {impl!r}; known: {', '.join(IMPLS)}")


# ----------------------------------------------------------------------------- NTK implementations


def _timed(fn, warm: bool = False) -> float:
    """Seconds of one call of ``fn``; with ``warm``, after one untimed call (see :func:`bench_ntk_impls`)."""
    if warm:
        jax.block_until_ready(fn())
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t0


def bench_ntk_impls(*, models=None, ms=(1e3, 1e4, 1e5), ns=(32, 128), d=16, k=1,
                    impls=IMPLS, repeats=3, chunk_size=DEFAULT_CHUNK, memory_budget=_ne.DEFAULT_MEMORY_BUDGET, max_seconds=60.0,
                    slow_s=5.0, warm_s=0.5, gemm_size=1024, dtype=jnp.float64, key=None, progress=None) -> list[dict]:
    """One row per (model, n, m, implementation); see the module docstring.

    Within a cell, every implementation is compiled and run once (warm-up, and its difference
    to the structured NTK), then timed round-robin for ``repeats`` rounds (implementations
    slower than ``slow_s`` in the first round only), with a square GEMM of side ``gemm_size``
    timed in every round too: the times and the GEMM rate of a row see the same load on a
    shared machine.  ``time_s`` is the best round.

    Each timed call of the GEMM, of the exponential pass and of every implementation whose first
    call took under ``warm_s`` follows an untimed call of the same function.  Otherwise a quick
    call that runs right after one of the Jacobian implementations (3.2 GiB at n = 128,
    m = 1e5) pays to fault its own buffers in again once that memory is freed: measured on the
    project's 2-core CPU, softmax-sign's structured NTK took 0.12-0.34 s (0.1-0.28 s of it system
    time) right after nt-jc and 0.08-0.14 s on the next call.  The slower implementations get no
    extra call: their own allocations are part of every call they make.
    """
    key = jax.random.key(0) if key is None else key
    unusable = {impl: nt_unusable(impl) for impl in impls}
    A = jax.random.normal(key, (gemm_size, gemm_size), dtype)
    gemm = jax.jit(lambda a: a @ a)
    jax.block_until_ready(gemm(A))
    rows = []
    for name in models or T.model_names():  # default: every registered model
        for n in ns:
            last: dict[str, tuple[int, float]] = {}
            for m in sorted(int(v) for v in ms):
                model, kk, P, frozen, U = model_inputs(name, m=m, n=int(n), d=d, k=k, dtype=dtype, key=key)
                ref = None
                cell, ready = [], {}
                for impl in impls:
                    row = {"model": name, "n": int(n), "m": m, "d": d, "k": kk, "impl": impl,
                           "dtype": jnp.dtype(dtype).name, "time_s": None, "first_s": None, "compile_s": None,
                           "work_bytes": None, "arg_bytes": None, "rel_err": None, "note": ""}
                    cell.append(row)
                    try:
                        if unusable[impl]:
                            raise Skip(unusable[impl])
                        if impl != "structured" and impl != "nt-sd":
                            over = jacobian_over_budget(n=int(n), k=kk, m=m, d=d, dtype=dtype, budget=memory_budget)
                            if over:
                                raise Skip(over)
                        if impl in last:
                            m0, t0 = last[impl]
                            if t0 * m / m0 > max_seconds:
                                raise Skip(f"predicted {t0 * m / m0:.0f} s > max {max_seconds:.0f} s")
                        t0 = time.perf_counter()
                        compiled = _jitted_ntk(impl, model, chunk_size).lower(P, frozen, U).compile()
                        row["compile_s"] = time.perf_counter() - t0
                        row.update(xla_memory(compiled))
                        total = (row["work_bytes"] or 0) + (row["arg_bytes"] or 0)
                        if total > memory_budget:
                            raise Skip(f"XLA needs {total / 2**30:.1f} GiB > budget {memory_budget / 2**30:.1f} GiB")
                        t0 = time.perf_counter()
                        H = jax.block_until_ready(compiled(P, frozen, U))
                        row["first_s"] = time.perf_counter() - t0
                        if impl == "structured":
                            ref = H
                        elif ref is not None:
                            row["rel_err"] = float(jnp.max(jnp.abs(H - ref)) / jnp.max(jnp.abs(ref)))
                        del H
                        ready[impl] = (row, compiled)
                    except Exception as e:  # noqa: BLE001 - a skip or a failure is a result
                        note_failure(row, e)
                gemm_best, exp_best = 0.0, None
                exps = exp_pass(chunk_size)
                jax.block_until_ready(exps(P, U))
                for rnd in range(repeats):
                    gemm_best = max(gemm_best, 2.0 * gemm_size**3 / _timed(lambda: gemm(A), warm=True))
                    t = _timed(functools.partial(exps, P, U), warm=True)
                    exp_best = t if exp_best is None else min(exp_best, t)
                    for impl, (row, compiled) in ready.items():
                        if rnd > 0 and row["first_s"] > slow_s:
                            continue
                        try:
                            t = _timed(functools.partial(compiled, P, frozen, U), warm=row["first_s"] < warm_s)
                        except Exception as e:  # noqa: BLE001
                            note_failure(row, e)
                            continue
                        row["time_s"] = t if row["time_s"] is None else min(row["time_s"], t)
                for row in cell:
                    if row["time_s"]:
                        last[row["impl"]] = (m, row["time_s"])
                    row["gemm_flop_per_s_same_time"] = gemm_best
                    if row["impl"] == "structured":
                        row["exp_pass_s"] = exp_best
                        row["symmetric_gram_flops"] = symmetric_gram_flops(name, m=m, n=int(n), k=kk)
                    if row["impl"] == "structured" and row["time_s"]:
                        row["flops"] = structured_flops(name, m=m, n=int(n), d=d, k=kk)
                        row["flop_per_s"] = row["flops"] / row["time_s"]
                        row["fraction_of_gemm_same_time"] = row["flop_per_s"] / gemm_best
                    rows.append(row)
                    if progress is not None:
                        progress(row)
                del P, frozen, ready
    return rows


# ----------------------------------------------------------------------------- largest m in a budget


def max_m_in_budget(*, models=None, n=128, d=16, k=1, impls=IMPLS,
                    budget=_ne.DEFAULT_MEMORY_BUDGET, probes=(8192, 32768), chunk_size=DEFAULT_CHUNK, dtype=jnp.float64,
                    key=None, progress=None) -> list[dict]:
    """Largest m whose compiled program (args + temporaries + outputs) fits ``budget`` bytes.

    Each implementation is compiled (not run) at the two ``probes`` values of m; the bytes are
    fitted as ``a + b m``.  Also reports the structured NTK's working memory (temporaries +
    outputs) at both m, which should not grow with m.
    """
    key = jax.random.key(0) if key is None else key
    unusable = {impl: nt_unusable(impl) for impl in impls}
    rows = []
    m1, m2 = (int(v) for v in probes)
    for name in models or T.model_names():  # default: every registered model
        for impl in impls:
            row = {"model": name, "n": int(n), "d": d, "impl": impl, "budget_bytes": int(budget), "m_max": None,
                   "bytes_per_row": None, "fixed_bytes": None, "work_bytes": [], "note": ""}
            with recorded(row, rows, progress):
                if unusable[impl]:
                    raise Skip(unusable[impl])
                args, work = [], []
                for m in (m1, m2):
                    model, kk, P, frozen, U = model_inputs(name, m=m, n=int(n), d=d, k=k, dtype=dtype, key=key)
                    compiled = _jitted_ntk(impl, model, chunk_size).lower(P, frozen, U).compile()
                    mem = xla_memory(compiled)
                    if mem["work_bytes"] is None:
                        raise Skip("no memory analysis on this backend")
                    args.append(mem["arg_bytes"])
                    work.append(mem["work_bytes"])
                row["work_bytes"] = work
                # Inputs grow linearly in m; a working set that does not grow with m (the
                # structured NTK's: it can even shrink, with the ragged last chunk) counts at its largest.
                b = (args[1] - args[0]) / (m2 - m1) + max((work[1] - work[0]) / (m2 - m1), 0.0)
                a = max(args[i] + work[i] - b * mi for i, mi in enumerate((m1, m2)))
                row["bytes_per_row"], row["fixed_bytes"] = b, a
                row["m_max"] = int((budget - a) / b) if b > 0 else None
                row["k"] = kk
    return rows


# ----------------------------------------------------------------------------- the suite


def run_suite(*, models=None, ms=(1e3, 1e4, 1e5), ns=(32, 128), d=16, k=1,
              impls=IMPLS, repeats=3, memory_budget=_ne.DEFAULT_MEMORY_BUDGET, max_seconds=60.0, gd=True, gd_ms=(1e4, 1e5),
              fit=True, fit_probes=(8192, 32768), gemm_size=2048, chunk_size=DEFAULT_CHUNK, dtype=jnp.float64,
              progress=None) -> dict:
    """Run every part of the suite; returns ``{"gemm", "ntk", "gd_step", "max_m"}``."""
    models = tuple(models or T.model_names())  # default: every registered model
    out: dict = {"settings": {"models": list(models), "ms": [int(v) for v in ms], "ns": [int(v) for v in ns], "d": d,
                              "k": k, "impls": list(impls), "repeats": repeats, "memory_budget": int(memory_budget),
                              "max_seconds": max_seconds, "chunk_size": chunk_size, "dtype": jnp.dtype(dtype).name}}
    def square():
        rates = [gemm_rate(size=sz, dtype=dtype, repeats=max(repeats, 5)) for sz in (gemm_size // 2, gemm_size)]
        return max(rates, key=lambda r: r["flop_per_s"])

    # The roofline is the best square-GEMM rate seen, measured before and after the suite (the
    # machine may be shared: a single measurement under load understates it).
    out["gemm"] = {"square_before": square()}
    for n in ns:
        for name in models:
            w = gram_width(name, int(n), T.get_model(name).fixed_k or k)
            out["gemm"][f"gram {name} n={int(n)}"] = gemm_rate(shape=(chunk_size, w), dtype=dtype, repeats=repeats)
    out["ntk"] = bench_ntk_impls(models=models, ms=ms, ns=ns, d=d, k=k, impls=impls, repeats=repeats,
                                 chunk_size=chunk_size, memory_budget=memory_budget, max_seconds=max_seconds,
                                 gemm_size=max(gemm_size // 2, 1), dtype=dtype, progress=progress)
    out["gd_step"] = bench_gd_step(models=models, ms=gd_ms, n=max(ns), d=d, k=k, repeats=repeats,
                                   chunk_size=chunk_size, memory_budget=memory_budget, dtype=dtype,
                                   progress=progress) if gd else []
    out["max_m"] = max_m_in_budget(models=models, n=max(ns), d=d, k=k, impls=impls, budget=memory_budget,
                                   probes=fit_probes, chunk_size=chunk_size, dtype=dtype,
                                   progress=progress) if fit else []
    out["gemm"]["square_after"] = square()
    out["gemm"]["square"] = max(out["gemm"]["square_before"], out["gemm"]["square_after"],
                                key=lambda r: r["flop_per_s"])
    peak = out["gemm"]["square"]["flop_per_s"]
    for r in out["ntk"]:
        if r.get("flop_per_s"):
            r["fraction_of_gemm"] = r["flop_per_s"] / peak
        if r.get("exp_pass_s") is not None:
            r["floor_s"] = r["exp_pass_s"] + r["symmetric_gram_flops"] / peak
    return out


def _f(x, fmt="{:.3g}"):
    return "-" if x is None else fmt.format(x)


def _mib(x):
    return "-" if x is None else f"{x / 2**20:.1f}"


def format_suite(res: dict, machine: str = "") -> str:
    """Markdown tables of :func:`run_suite`'s result."""
    lines = []
    if machine:
        lines += [f"Machine: {machine}", ""]
    sq = res["gemm"]["square"]
    before, after = res["gemm"]["square_before"], res["gemm"]["square_after"]
    lines += [f"{sq['dtype']} GEMM rate (roofline): {sq['flop_per_s'] / 1e9:.1f} GFLOP/s, the best square GEMM "
              f"(before the suite {before['flop_per_s'] / 1e9:.1f} at {before['shape'][0]}, after "
              f"{after['flop_per_s'] / 1e9:.1f} at {after['shape'][0]}); the structured kernel's own Gram shape "
              "(width x chunk) (width x chunk)^T, GFLOP/s: " + ", ".join(
                  f"{k[5:]}: {v['flop_per_s'] / 1e9:.1f}" for k, v in res["gemm"].items() if k.startswith("gram")), ""]
    impls = res["settings"]["impls"]
    by = {}
    for r in res["ntk"]:
        by.setdefault((r["model"], r["n"], r["m"]), {})[r["impl"]] = r
    head = ["model", "n", "m"] + [f"{i} s" for i in impls] + ["best nt / structured", "floor s", "best nt / floor",
                                                              "structured GFLOP/s", "% of GEMM",
                                                              "% of GEMM same time"] + [
        f"{i} MiB" for i in impls] + ["notes"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (model, n, m), cells in by.items():
        st = cells.get("structured", {})
        nt_times = [cells[i]["time_s"] for i in impls if i.startswith("nt-") and i in cells and cells[i]["time_s"]]
        ratio = (min(nt_times) / st["time_s"]) if nt_times and st.get("time_s") else None
        floor = st.get("floor_s")
        ceiling = min(nt_times) / floor if nt_times and floor else None
        frac = (st.get("flop_per_s") or 0) / sq["flop_per_s"] * 100 if st.get("flop_per_s") else None
        notes = "; ".join(f"{i}: {cells[i]['note']}" for i in impls if i in cells and cells[i]["note"])
        errs = [cells[i]["rel_err"] for i in impls if i in cells and cells[i].get("rel_err") is not None]
        if errs:
            notes = (notes + "; " if notes else "") + f"max rel diff vs structured {max(errs):.1e}"
        lines.append("| " + " | ".join([model, str(n), f"{m:.0e}"] + [_f(cells.get(i, {}).get("time_s")) for i in impls]
                                        + [_f(ratio), _f(floor), _f(ceiling), _f((st.get("flop_per_s") or 0) / 1e9 if st.get("flop_per_s") else None),
                                           _f(frac, "{:.0f}"),
                                           _f(100 * st["fraction_of_gemm_same_time"] if st.get("fraction_of_gemm_same_time") else None, "{:.0f}")]
                                        + [_mib(cells.get(i, {}).get("work_bytes")) for i in impls] + [notes]) + " |")
    if res.get("gd_step"):
        gimpls = list(dict.fromkeys(r["impl"] for r in res["gd_step"]))
        lines += ["", "Gradient-descent step (s):", "", "| model | n | m | " + " | ".join(gimpls) + " | notes |",
                  "|" + "---|" * (len(gimpls) + 4)]
        gby = {}
        for r in res["gd_step"]:
            gby.setdefault((r["model"], r["n"], r["m"]), {})[r["impl"]] = r
        for (model, n, m), cells in gby.items():
            notes = "; ".join(f"{i}: {c['note']}" for i, c in cells.items() if c["note"].startswith(("skipped", "failed")))
            lines.append(f"| {model} | {n} | {m:.0e} | " + " | ".join(_f(cells.get(i, {}).get("time_s")) for i in gimpls)
                         + f" | {notes} |")
    if res.get("max_m"):
        lines += ["", f"Largest m in {res['settings']['memory_budget'] / 2**30:.1f} GiB (XLA bytes fitted a + b m):", "",
                  "| model | n | impl | m_max | bytes per row | fixed MiB | working MiB at the two probes | note |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in res["max_m"]:
            lines.append(f"| {r['model']} | {r['n']} | {r['impl']} | {_f(r['m_max'], '{:.3g}')} | "
                         f"{_f(r['bytes_per_row'], '{:.0f}')} | {_mib(r['fixed_bytes'])} | "
                         f"{', '.join(_mib(w) for w in r['work_bytes'])} | {r['note']} |")
    return "\n".join(lines)
