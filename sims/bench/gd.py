"""Benchmark of one gradient-descent step (part of ``sims bench suite``).

Parameter space (``grad``: ``value_and_grad`` of the squared loss, as in ``sims run
convergence``; ``nt-linearize``: the same step on ``nt.linearize(f, P0)``) and function space
(``r <- r - eta H r`` with H from ``structured``, ``autodiff`` or ``nt-jc``, the last followed by
``nt.predict.gradient_descent_mse``).  Measurements, never tests.
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp

import theory as T
from theory.kernels import ntk_empirical as _ne
from theory.kernels.ntk_empirical import autodiff_forward_ntk
from sims.bench.common import (Skip, best_time, jacobian_over_budget, model_inputs, nt_unusable, recorded,
                                xla_memory)
from sims.bench.ntcompat import import_neural_tangents, nt_model_ntk_fn
from theory.streaming import DEFAULT_CHUNK

__all__ = ["GD_IMPLS", "bench_gd_step"]

GD_IMPLS = ("grad", "nt-linearize", "kernel-structured", "kernel-autodiff", "kernel-nt-jc")


def _gd_step_fn(impl: str, model, chunk_size: int, eta: float):
    """A jittable ``(P, P0, frozen, U, y) -> next state`` for one kind of gradient-descent step."""

    def outputs(P, fr, U):
        return jax.vmap(model.forward, in_axes=(None, None, 0))(P, fr, U)

    def flat_step(H, r):
        K = T.kernel_matrix(H)
        return r - eta * (K @ r.reshape(-1)).reshape(r.shape)

    if impl == "grad":
        def step(P, P0, fr, U, y):
            g = jax.grad(lambda P_: 0.5 * jnp.sum((outputs(P_, fr, U) - y) ** 2))(P)
            return P - eta * g
    elif impl == "nt-linearize":
        nt = import_neural_tangents()

        def step(P, P0, fr, U, y):
            f_lin = nt.linearize(lambda P_, U_: outputs(P_, fr, U_), P0)
            g = jax.grad(lambda P_: 0.5 * jnp.sum((f_lin(P_, U) - y) ** 2))(P)
            return P - eta * g
    elif impl == "kernel-structured":
        def step(P, P0, fr, U, y):
            return flat_step(model.structured_ntk(P, fr, U, None, chunk_size), outputs(P, fr, U) - y)
    elif impl == "kernel-autodiff":
        def step(P, P0, fr, U, y):
            return flat_step(autodiff_forward_ntk(model.forward, P, fr, U, None), outputs(P, fr, U) - y)
    elif impl == "kernel-nt-jc":
        nt = import_neural_tangents()
        ntk = nt_model_ntk_fn(model, implementation="jacobian_contraction")
        out_jit = jax.jit(outputs)

        def step(P, P0, fr, U, y):
            # nt.predict caches an eigendecomposition with lru_cache, which leaks tracers under
            # jit: the kernel and the outputs are jitted, the prediction runs eagerly.
            H = ntk(P, fr, U, None)
            # nt's MSE is a mean over y.size outputs: learning_rate = eta * y.size gives the same step.
            predict = nt.predict.gradient_descent_mse(H, y, learning_rate=eta * y.size, trace_axes=())
            return predict(1.0, out_jit(P, fr, U)) - y

        step.eager = True
    else:
        raise ValueError(f"unknown step {impl!r}; known: {', '.join(GD_IMPLS)}")
    return step


def bench_gd_step(*, models=None, ms=(1e4, 1e5), n=128, d=16, k=1, impls=GD_IMPLS,
                  repeats=3, chunk_size=DEFAULT_CHUNK, memory_budget=_ne.DEFAULT_MEMORY_BUDGET, eta=0.1, dtype=jnp.float64, key=None,
                  progress=None) -> list[dict]:
    """Time one gradient-descent step of each kind (see the module docstring); one row per cell."""
    key = jax.random.key(0) if key is None else key
    nt_reason = nt_unusable("nt-jc")
    rows = []
    for name in models or T.model_names():  # default: every registered model
        for m in sorted(int(v) for v in ms):
            model, kk, P, frozen, U = model_inputs(name, m=m, n=int(n), d=d, k=k, dtype=dtype, key=key)
            y = jax.random.normal(jax.random.fold_in(key, 2), (int(n), kk), dtype)
            P1 = P + 1e-3 * jax.random.normal(jax.random.fold_in(key, 3), P.shape, dtype)
            for impl in impls:
                row = {"model": name, "n": int(n), "m": m, "d": d, "k": kk, "impl": impl, "time_s": None,
                       "compile_s": None, "work_bytes": None, "arg_bytes": None, "note": ""}
                with recorded(row, rows, progress):
                    if impl.startswith(("nt-", "kernel-nt")) and nt_reason:
                        raise Skip(nt_reason)
                    if impl in ("kernel-autodiff", "kernel-nt-jc"):
                        over = jacobian_over_budget(n=int(n), k=kk, m=m, d=d, dtype=dtype, budget=memory_budget)
                        if over:
                            raise Skip(over)
                    step = _gd_step_fn(impl, model, chunk_size, eta)
                    t0 = time.perf_counter()
                    if getattr(step, "eager", False):
                        compiled = step
                        jax.block_until_ready(step(P1, P, frozen, U, y))
                        row["note"] = "jitted NTK + eager nt.predict; compile_s includes one run"
                    else:
                        compiled = jax.jit(step).lower(P1, P, frozen, U, y).compile()
                        row.update(xla_memory(compiled))
                    row["compile_s"] = time.perf_counter() - t0
                    _, row["time_s"] = best_time(functools.partial(compiled, P1, P, frozen, U, y), repeats)
            del P, P1, frozen
    return rows
