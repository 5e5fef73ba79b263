"""Measurement helpers shared by the benchmarks (``sims bench ntk`` and ``sims bench suite``).

Timing is the best of several calls after a warm-up; memory is XLA's own accounting of a
compiled program; the machine description says whether it was shared while measuring; the GEMM
rate is the roofline the achieved FLOP/s are compared with.  Measurements, never tests.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import time
from typing import Callable

import jax
import jax.numpy as jnp

import theory as T
from sims.bench.ntcompat import nt_available, structured_derivatives_ok
from theory.kernels import prefix
from theory.kernels.ntk_empirical import autodiff_ntk_bytes
from theory.streaming import row_chunk_sum

__all__ = [
    "Skip", "best_time", "xla_memory", "model_inputs", "machine_info", "describe_machine", "gemm_rate",
    "structured_flops", "gram_width", "NT_IMPLS", "nt_unusable", "note_failure", "recorded",
    "jacobian_over_budget", "operand_width", "symmetric_gram_flops", "exp_pass",
]


# neural-tangents' empirical NTK implementations, by benchmark name.
NT_IMPLS = {"nt-jc": "jacobian_contraction", "nt-nvp": "ntk_vector_products", "nt-sd": "structured_derivatives"}


class Skip(Exception):
    """An implementation was not run at this size; the message says why."""


def jacobian_over_budget(*, n: int, k: int, m: int, d: int, dtype, budget: int) -> str:
    """Why an implementation that materialises the n Jacobians (n, k, m d) cannot run, or ''."""
    need = autodiff_ntk_bytes(n, 0, k, m * d, jnp.dtype(dtype).itemsize)
    return f"Jacobian {need / 2**30:.1f} GiB > budget {budget / 2**30:.1f} GiB" if need > budget else ""


def note_failure(row: dict, e: BaseException) -> None:
    """Record in ``row["note"]`` why a measurement was skipped or failed (a failure is a result)."""
    row["note"] = f"skipped: {e}" if isinstance(e, Skip) else f"failed: {type(e).__name__}: {str(e)[:200]}"


@contextlib.contextmanager
def recorded(row: dict, rows: list, progress: Callable | None = None):
    """Measure into ``row`` inside the block; a :class:`Skip` or an error becomes its note.

    The row is then appended to ``rows`` and shown with ``progress`` either way.
    """
    try:
        yield row
    except Exception as e:  # noqa: BLE001 - an implementation failing is a result
        note_failure(row, e)
    rows.append(row)
    if progress is not None:
        progress(row)


def best_time(fn: Callable, repeats: int, slow_s: float = 5.0) -> tuple[float, float]:
    """``(first, best)``: one warm-up call, then ``repeats`` timed calls (one if the warm-up was slow)."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    best = first
    for _ in range(repeats if first < slow_s else 1):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return first, best


def xla_memory(compiled) -> dict:
    """XLA's bytes of a compiled program: ``work`` (temporaries + outputs) and ``arg`` (inputs)."""
    try:
        ma = compiled.memory_analysis()
        return {"work_bytes": int(ma.temp_size_in_bytes + ma.output_size_in_bytes),
                "arg_bytes": int(ma.argument_size_in_bytes)}
    except Exception:  # noqa: BLE001 - backends without memory analysis
        return {"work_bytes": None, "arg_bytes": None}


def model_inputs(name, *, m, n, d, k, dtype, key):
    """``(model, k, P, frozen, U)`` for a benchmark cell: sigma = 1 prefix, inputs of norm about 1/2."""
    model = T.get_model(name)
    kk = model.fixed_k or k
    P, frozen = T.init_model(name, key=jax.random.fold_in(key, m), m=m, d=d, k=kk, sigma=1.0, dtype=dtype)
    U = jax.random.normal(jax.random.fold_in(key, 1), (n, d), dtype) / (2 * jnp.sqrt(jnp.asarray(d, dtype)))
    return model, kk, P, frozen, U



def machine_info() -> dict:
    """CPU model, core count, load average (the machine may be shared) and JAX devices."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        load = None
    devs = jax.devices()
    return {"cpu": cpu, "machine": platform.machine(), "cores": os.cpu_count(), "load_average": load,
            "jax_devices": f"{devs[0].platform} x{len(devs)} ({getattr(devs[0], 'device_kind', '')})"}


def describe_machine(before: dict, after: dict | None = None) -> str:
    """One line naming the machine of :func:`machine_info` and its load before (and after) a benchmark."""
    load = f"load average {before['load_average']}" + (f" -> {after['load_average']}" if after else "")
    return (f"{before['cores']}-core {before['machine']} ({before['cpu']}), JAX {jax.__version__} on "
            f"{before['jax_devices']}; {load} (1, 5, 15 min), i.e. shared with other processes when above 0")


# ----------------------------------------------------------------------------- roofline


def gemm_rate(*, size: int = 2048, dtype=jnp.float64, repeats: int = 3, shape: tuple[int, int] | None = None) -> dict:
    """Measured GEMM rate in FLOP/s: ``A @ B`` with square ``size`` x ``size`` operands, or, with
    ``shape=(c, w)``, the structured kernel's per-chunk Gram ``A A^T`` for A of shape (w, c)."""
    key = jax.random.key(0)
    if shape is None:
        A = jax.random.normal(key, (size, size), dtype)
        B = jax.random.normal(jax.random.fold_in(key, 1), (size, size), dtype)
        f = jax.jit(lambda a, b: a @ b)
        flops = 2.0 * size**3
        args = (A, B)
    else:
        c, w = shape
        A = jax.random.normal(key, (w, c), dtype)
        f = jax.jit(lambda a: a @ a.T)
        flops = 2.0 * c * w * w
        args = (A,)
    _, best = best_time(lambda: f(*args), repeats)
    return {"flops": flops, "seconds": best, "flop_per_s": flops / best,
            "shape": list(shape) if shape else [size, size, size], "dtype": jnp.dtype(dtype).name}


def structured_flops(model, *, m: int, n: int, d: int, k: int = 1) -> float:
    """Floating-point operations of one structured NTK of ``n`` inputs with themselves.

    ``m`` times the model's own count per prefix row (``StylizedModel.flops_per_row``, declared
    and explained in its module: each matmul 2 flops per multiply-add, each exp or product 1).
    """
    model = T.get_model(model)
    if model.flops_per_row is None:
        raise ValueError(f"no flop count for model {model.name!r}")
    return float(m) * model.flops_per_row(n, d, k)


def gram_width(model, n: int, k: int) -> int:
    """Width w of the structured kernel's largest per-chunk GEMM ``(c x w)^T (c x w)`` (prefix: T^T T)."""
    return n * T.get_model(model).gram_width(k)


def operand_width(model, n: int, k: int) -> int:
    """Columns per row of the structured NTK's operand: the kernel is a Gram matrix of this width."""
    return n * T.get_model(model).operand_width(k)


def symmetric_gram_flops(model, *, m: int, n: int, k: int) -> float:
    """The least GEMM work of a kernel of n inputs with themselves through its Gram factorisation.

    The NTK of every stylized model is ``sum_r A_r^T A_r`` over the m prefix rows for an operand
    of width w (:func:`operand_width`; neural-tangents' structured derivatives find the same
    rank structure); a symmetric rank-m update needs w(w+1)/2 multiply-adds per row.
    """
    w = operand_width(model, n, k)
    return float(m) * w * (w + 1)


@functools.lru_cache(maxsize=None)
def exp_pass(chunk_size: int):
    """A jitted ``(P, U) -> sum_r exp(P U^T)``: the logits and exponentials every implementation needs.

    Held as (rows, n): for this pass alone that layout measured 6-12% faster than (n, rows), so
    it keeps the floor the lower of the two.  One compiled function per chunk size."""
    return jax.jit(lambda P, U: row_chunk_sum(lambda P_c: jnp.sum(jnp.exp(P_c @ U.T), 0), (P,), chunk_size))


def nt_unusable(impl: str) -> str:
    """'' if the nt implementation can be used here, else the reason."""
    if impl not in NT_IMPLS:
        return ""
    ok, why = nt_available()
    if not ok:
        return why
    if impl == "nt-sd":
        ok, detail = structured_derivatives_ok(prefix.MODEL)
        if not ok:
            return f"nt STRUCTURED_DERIVATIVES shim unusable: {detail}"
    return ""
