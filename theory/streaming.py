"""Streaming reductions over prefix rows.

Every quantity in this toolkit (outputs, gradients, kernels, prefix summaries) is a reduction
over the m prefix rows.  :func:`row_chunk_reduce` walks the rows in chunks of a static size with
``lax.fori_loop`` and ``lax.dynamic_slice`` (no padded copy of P), then handles the ragged tail
with one static slice, so peak memory is set by the chunk size, not by m.

The per-chunk function must be a pure function of the row slices; ``combine`` must be
associative (a sum, a maximum, an online-softmax merge).

Two chunks per loop step (:data:`LANES`): the loop body evaluates ``fn`` on two chunks that do
not depend on each other, so XLA's CPU runtime can run them on two cores at once.  That pays
where one chunk's work is too small for XLA to split over threads by itself, i.e. for Grams of
width up to about 64 (the timings are in ``docs/scaling.md``, "Two chunks per loop step").  The cost is a second chunk's working set held at the same time
(:func:`theory.scaling.memory_plan.estimate_ntk_bytes` counts it).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
from jax import lax

__all__ = [
    "row_chunk_reduce",
    "row_chunk_sum",
    "row_chunk_max",
    "online_softmax",
    "merge_softmax_stats",
    "Reducers",
    "local_reducers",
    "DEFAULT_CHUNK",
    "LANES",
]

DEFAULT_CHUNK = 4096
#: Chunks evaluated per loop step, independently of each other (module docstring).
LANES = 2


def row_chunk_reduce(fn: Callable, combine: Callable, rows: Sequence, chunk_size: int, *, lanes: int = LANES):
    """Reduce ``fn(*row_slices)`` over chunks of the leading axis of ``rows`` with ``combine``.

    Works under ``jit``; m, ``chunk_size`` and ``lanes`` are static.

    Args:
        fn: ``(*row_slices) -> pytree``, a pure function of a chunk of c rows of each array.
        combine: an associative merge of two results of ``fn``.
        rows: a tuple of arrays (or pytrees of arrays) sharing the leading length m.
        chunk_size: rows per chunk (clipped to m).
        lanes: chunks evaluated per loop step (the order of the combines is the same for every
            ``lanes``).

    Returns:
        ``combine(... combine(fn(chunk_0), fn(chunk_1)) ..., fn(tail))``.

    Raises:
        ValueError: the arrays of ``rows`` differ in length, or ``lanes`` is not a positive integer.
    """
    leaves = jax.tree_util.tree_leaves(rows)
    m = leaves[0].shape[0]
    if any(leaf.shape[0] != m for leaf in leaves):
        raise ValueError("row_chunk_reduce: all row arrays must share the leading length m")
    if int(lanes) != lanes or lanes < 1:
        raise ValueError(f"row_chunk_reduce: lanes must be a positive integer, got {lanes!r}")
    c = max(1, min(int(chunk_size), m))
    q, rem = divmod(m, c)

    def take(start, size):
        return jax.tree_util.tree_map(lambda a: lax.dynamic_slice_in_dim(a, start, size, 0), rows)

    acc = fn(*take(0, c))
    if q > 1:
        acc = lax.fori_loop(1, q, lambda i, a: combine(a, fn(*take(i * c, c))), acc, unroll=int(lanes))
    if rem:
        tail = jax.tree_util.tree_map(lambda a: a[q * c :], rows)
        acc = combine(acc, fn(*tail))
    return acc


def _add(a, b):
    return jax.tree_util.tree_map(jnp.add, a, b)


def row_chunk_sum(fn: Callable, rows: Sequence, chunk_size: int):
    """``sum_r fn(row r)`` computed chunk by chunk (:func:`row_chunk_reduce` with a sum).

    Args:
        fn: maps row slices (c rows each) to a pytree of sums over those rows.
        rows: arrays sharing the leading length m; chunk_size: rows per chunk.

    Returns:
        The pytree of sums over all m rows.
    """
    return row_chunk_reduce(fn, _add, rows, chunk_size)


def online_softmax(logits_fn: Callable, values_fn: Callable, rows: Sequence, chunk_size: int):
    """Softmax statistics over the m rows, streamed: ``(mx, s, weighted)`` per query.

    Args:
        logits_fn: ``(*row_slices) -> (c, n)``, the logits of a chunk of c rows against n queries.
        values_fn: ``(*row_slices) -> (c, q)``, a value per row.
        rows: arrays sharing the leading length m; chunk_size: rows per chunk.

    Returns:
        ``(mx, s, weighted)``: the per-query maximum logit (n,), the normaliser
        ``s = sum_r exp(z_r - mx)`` (n,) and the un-normalised weighted sum
        ``sum_r exp(z_r - mx) value_r`` (n, q); the softmax average is ``weighted / s[:, None]``
        and ``S_r = exp(z_r - mx) / s``.
    """

    def chunk_stats(*rs):
        z = logits_fn(*rs).T  # (n, c): the reductions run along the minor axis
        mx = jnp.max(z, axis=1)
        e = jnp.exp(z - mx[:, None])
        return mx, jnp.sum(e, axis=1), e @ values_fn(*rs)

    return row_chunk_reduce(chunk_stats, merge_softmax_stats, rows, chunk_size)


def merge_softmax_stats(a, b):
    """Merge two softmax statistics over disjoint row sets (associative).

    Args:
        a, b: ``(mx (n,), s (n,), weighted (n, q))`` as returned by :func:`online_softmax`.

    Returns:
        The statistics of the union, same shapes.
    """
    mx = jnp.maximum(a[0], b[0])
    ca, cb = jnp.exp(a[0] - mx), jnp.exp(b[0] - mx)
    return mx, a[1] * ca + b[1] * cb, a[2] * ca[:, None] + b[2] * cb[:, None]


def row_chunk_max(fn: Callable, rows: Sequence, chunk_size: int):
    """``max_r fn(row r)`` computed chunk by chunk.

    Args:
        fn: maps row slices to an array, reduced elementwise; rows, chunk_size: as :func:`row_chunk_sum`.

    Returns:
        The elementwise maximum over all chunks, of ``fn``'s shape.
    """
    return row_chunk_reduce(fn, jnp.maximum, rows, chunk_size)


class Reducers(NamedTuple):
    """The two row reductions a model formula needs, so one formula serves every layout.

    ``row_sum(fn, rows)`` is :func:`row_chunk_sum` and ``online_softmax(logits_fn, values_fn,
    rows)`` is :func:`online_softmax` on one device (:func:`local_reducers`);
    :func:`theory.scaling.sharding.sharded_reducers` gives the same two over rows split across devices.
    """

    row_sum: Callable
    online_softmax: Callable


def local_reducers(chunk_size: int = DEFAULT_CHUNK) -> Reducers:
    """Single-device reducers streaming ``chunk_size`` rows at a time.

    Args:
        chunk_size: rows per chunk.

    Returns:
        :class:`Reducers` of :func:`row_chunk_sum` and :func:`online_softmax`.
    """
    return Reducers(
        lambda fn, rows: row_chunk_sum(fn, rows, chunk_size),
        lambda logits_fn, values_fn, rows: online_softmax(logits_fn, values_fn, rows, chunk_size),
    )
