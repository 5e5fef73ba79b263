"""Beyond one device: the prefix rows sharded over a device mesh.

Every quantity of the stylized models (outputs, structured NTK, the softmax statistics that
summarise a prefix) is a reduction over the m prefix rows.  Rows are independent terms, so
they shard perfectly: each device reduces its own block of m/D rows in chunks
(:func:`theory.streaming.row_chunk_reduce`), and one collective merges the D partial results
(``psum`` for sums; ``pmax`` then ``psum`` for an online softmax).  Communication is the size of
the result (n1 n2 k^2 numbers for a kernel), never of the rows, so time and memory per device
fall like 1/D.  Only public JAX APIs are used: ``jax.sharding.Mesh`` over one axis ``"m"``,
``NamedSharding``/``PartitionSpec`` and ``jax.shard_map``.

- :func:`device_mesh`, :func:`shard_rows`, :func:`shard_model`: the mesh and row placement.
- :func:`sharded_row_sum`, :func:`sharded_online_softmax`: the two reductions, usable inside
  ``jax.jit`` for any per-row function.
- :func:`sharded_structured_ntk`, :func:`sharded_model_outputs`: the same numbers as
  :func:`theory.structured_ntk` / :func:`theory.model_outputs`, row-sharded, for the registered
  models (``exp-sign``, ``softmax-sign``, ``prefix``; :data:`SHARDED_MODELS`).
- :func:`sharded_prefix_attention`: exact prefix attention (spec 1) with the prefix summary
  (max logit, normaliser, weighted values) reduced across devices.
- :func:`estimate_ntk_bytes`, :func:`choose_chunk_size` (from :mod:`theory.scaling.memory_plan`, where
  they are defined): memory of a structured NTK before a run, and the largest chunk that fits a
  budget (or a refusal naming what would fit).

m need not be a multiple of the device count: the first ``D * (m // D)`` rows are sharded and
the remaining ``m mod D`` rows are reduced replicated, then merged.  To keep P resident on the
devices (no transfer per call), place it once with :func:`shard_rows`, which needs m divisible
by D.

Multi-host use (``jax.distributed``): start one process per host and call
``jax.distributed.initialize()`` (coordinator address, process count and id; automatic on
SLURM, TPU pods and Open MPI) *before* any other JAX call.  ``jax.devices()`` then lists the
devices of every host and :func:`device_mesh` builds a global mesh over all of them.  Each
process holds only its own rows: build P with ``jax.make_array_from_callback(P_shape,
row_sharding(mesh), lambda index: local_rows(index))`` (or
``jax.make_array_from_process_local_data``) instead of :func:`shard_rows`.  Inputs U and the
small frozen arrays are replicated.  The sharded functions return replicated results, so every
process holds the full kernel; nothing here gathers P to one host.  Validation in this module
uses device-side reductions only (no ``np.asarray`` of P), so it also works for arrays that are
not fully addressable by one process.  See ``docs/scaling.md``.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from theory import validation as _v
from theory.kernels.models import get_model, model_names
from theory.scaling.memory_plan import NtkMemory, NtkMemoryError, choose_chunk_size, estimate_ntk_bytes
from theory.kernels.ntk_empirical import check_model_shapes
from theory.prefix_attention import check_attention_args, input_block
from theory.streaming import (
    DEFAULT_CHUNK,
    Reducers,
    merge_softmax_stats,
    online_softmax,
    row_chunk_reduce,
    row_chunk_sum,
    local_reducers,
)

__all__ = [
    "AXIS",
    "SHARDED_MODELS",
    "device_mesh",
    "row_sharding",
    "replicated",
    "shard_rows",
    "shard_model",
    "constrain_rows",
    "row_reducers",
    "sharded_row_sum",
    "sharded_online_softmax",
    "sharded_structured_ntk",
    "sharded_model_outputs",
    "sharded_prefix_attention",
    "NtkMemory",
    "NtkMemoryError",
    "estimate_ntk_bytes",
    "choose_chunk_size",
]

AXIS = "m"


# ----------------------------------------------------------------------------- mesh and placement


def device_mesh(devices=None) -> Mesh:
    """A one-axis mesh ``("m",)`` over ``devices`` (default: every device, all hosts included).

    Returns: a ``jax.sharding.Mesh``.  Raises: InputError if ``devices`` is empty.
    """
    devs = list(jax.devices() if devices is None else devices)
    if not devs:
        raise _v.InputError("devices must not be empty")
    return Mesh(np.array(devs), (AXIS,))


def row_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (row) axis split over ``"m"`` of ``mesh``, other axes whole; returns a NamedSharding."""
    return NamedSharding(mesh, PartitionSpec(AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """Every axis whole on every device of ``mesh``; returns a NamedSharding."""
    return NamedSharding(mesh, PartitionSpec())


def _n_dev(mesh: Mesh) -> int:
    return int(mesh.shape[AXIS])


def shard_rows(x, mesh: Mesh | None = None):
    """Place ``x`` with its leading axis split over the mesh.

    Args: x (m, ...); mesh (default: :func:`device_mesh`).  Returns: the placed array.
    Raises: InputError unless the device count D divides m (the message names the nearest m).
    """
    mesh = mesh or device_mesh()
    D = _n_dev(mesh)
    m = int(np.shape(x)[0])
    if m % D:
        raise _v.InputError(
            f"cannot shard {m} rows evenly over {D} devices: choose m divisible by {D} "
            f"(e.g. {m - m % D} or {m + D - m % D}), or pass P unsharded (the sharded functions accept any m)"
        )
    return jax.device_put(x, row_sharding(mesh))


def constrain_rows(x, mesh: Mesh | None):
    """Inside ``jax.jit``: ask that ``x``'s leading (row) axis be split over ``mesh``.

    A layout hint (``jax.lax.with_sharding_constraint``), not a transfer: applied to a prefix as
    it is drawn, XLA generates each device's rows on that device (partitionable threefry, the
    default since JAX 0.5), and the forward pass and gradient are partitioned from there; any m
    works (XLA pads a ragged last block).  ``mesh=None`` (one device) returns ``x`` unchanged.
    Under ``vmap`` the batch axis stays whole.

    Args: x (m, ...); mesh or None.  Returns: ``x``, with the layout hint.
    """
    if mesh is None:
        return x
    return jax.lax.with_sharding_constraint(x, row_sharding(mesh))


def row_reducers(mesh: Mesh | None, chunk_size: int = DEFAULT_CHUNK) -> Reducers:
    """The row reductions for ``mesh``: :func:`sharded_reducers`, or streaming on one device if None.

    Args: mesh or None; chunk_size: rows per chunk.  Returns: :class:`~theory.streaming.Reducers`.
    """
    return local_reducers(chunk_size) if mesh is None else sharded_reducers(mesh, chunk_size)


def shard_model(model, P, frozen, mesh: Mesh | None = None):
    """``(P, frozen)`` placed on the mesh: P and per-row frozen arrays sharded, the rest replicated.

    Args: model (its ``row_axes`` name the per-row frozen entries); P (m, d); frozen; mesh.
    Returns: ``(P, frozen)`` placed.  Raises: InputError unless D divides m.
    """
    model = get_model(model)
    mesh = mesh or device_mesh()
    axes = model.row_axes  # the frozen fields with one value per prefix row, and their axis
    out = {}
    for key in frozen.field_names():
        val, ax = getattr(frozen, key), axes.get(key)
        if ax is None:
            out[key] = jax.device_put(val, replicated(mesh))
        else:
            spec = [None] * np.ndim(val)
            spec[ax] = AXIS
            if np.shape(val)[ax] % _n_dev(mesh):
                raise _v.InputError(f"cannot shard frozen.{key}: {np.shape(val)[ax]} rows over {_n_dev(mesh)} devices")
            out[key] = jax.device_put(val, NamedSharding(mesh, PartitionSpec(*spec)))
    return shard_rows(P, mesh), frozen.replace(**out)


# ----------------------------------------------------------------------------- sharded reductions


def _split(rows, D):
    m = jax.tree_util.tree_leaves(rows)[0].shape[0]
    q = m // D
    main = jax.tree_util.tree_map(lambda a: a[: q * D], rows)
    tail = jax.tree_util.tree_map(lambda a: a[q * D:], rows) if m % D else None
    return q, main, tail


def _sharded(reduce_rows: Callable, collective: Callable, combine: Callable, rows: Sequence, mesh: Mesh):
    """Reduce ``rows`` split over ``mesh``: each device runs ``reduce_rows`` on its m/D rows, the
    partial results meet in ``collective`` (psum, pmax, ...), and the rows left over when D does
    not divide m are reduced on every device and merged with ``combine``."""
    rows = tuple(rows)
    q, main, tail = _split(rows, _n_dev(mesh))
    if q == 0:
        return reduce_rows(*rows)
    spec = tuple(PartitionSpec(AXIS) for _ in rows)
    acc = jax.shard_map(lambda *rs: collective(reduce_rows(*rs)), mesh=mesh, in_specs=spec,
                        out_specs=PartitionSpec())(*main)
    return acc if tail is None else combine(acc, reduce_rows(*tail))


def sharded_row_sum(fn: Callable, rows: Sequence, *, mesh: Mesh, chunk_size: int = DEFAULT_CHUNK):
    """``sum_r fn(row r)`` with the rows split over ``mesh`` (use inside ``jax.jit``).

    Like :func:`theory.streaming.row_chunk_sum`: ``fn(*row_slices)`` returns a pytree of sums
    over the rows it is given; arrays it closes over are replicated.

    Args: fn; rows (arrays sharing the leading length m); mesh; chunk_size.
    Returns: the pytree of sums, replicated.
    """
    return _sharded(lambda *rs: row_chunk_sum(fn, rs, chunk_size), lambda acc: jax.lax.psum(acc, AXIS),
                    lambda a, b: jax.tree_util.tree_map(jnp.add, a, b), rows, mesh)


def _gather_softmax(st):
    mx, s, w = st
    g = jax.lax.pmax(mx, AXIS)
    c = jnp.exp(mx - g)
    return g, jax.lax.psum(s * c, AXIS), jax.lax.psum(w * c[:, None], AXIS)


def sharded_online_softmax(logits_fn: Callable, values_fn: Callable, rows: Sequence, *, mesh: Mesh,
                           chunk_size: int = DEFAULT_CHUNK):
    """The prefix summary ``(mx, s, weighted)`` of :func:`theory.streaming.online_softmax`, row-sharded.

    Each device streams its rows; the global maximum is a ``pmax`` and the rescaled sums a ``psum``.

    Args: logits_fn, values_fn, rows, chunk_size as in :func:`~theory.streaming.online_softmax`;
    mesh.  Returns: ``(mx (n,), s (n,), weighted (n, q))``, replicated.
    """
    return _sharded(lambda *rs: online_softmax(logits_fn, values_fn, rs, chunk_size), _gather_softmax,
                    merge_softmax_stats, rows, mesh)


def _sharded_max(fn, rows, *, mesh, chunk_size):
    return _sharded(lambda *rs: row_chunk_reduce(fn, jnp.maximum, rs, chunk_size),
                    lambda acc: jax.lax.pmax(acc, AXIS), jnp.maximum, rows, mesh)


# ----------------------------------------------------------------------------- per-model rules
#
# The models' own formulas (``ntk_rule`` / ``outputs_rule`` in theory/model_*.py), given the
# sharded reductions instead of the single-device ones.  The tests check the two paths agree.


def sharded_reducers(mesh: Mesh, chunk_size: int = DEFAULT_CHUNK) -> Reducers:
    """:class:`theory.streaming.Reducers` whose row reductions run split over ``mesh``.

    Args: mesh; chunk_size: rows per chunk on each device.  Returns: :class:`Reducers`.
    """
    return Reducers(
        functools.partial(sharded_row_sum, mesh=mesh, chunk_size=chunk_size),
        functools.partial(sharded_online_softmax, mesh=mesh, chunk_size=chunk_size),
    )


def _rules(name):
    model = get_model(name)
    return model.ntk_rule, model.outputs_rule


#: Models with a row-sharded NTK and forward pass (those defining both rules).
SHARDED_MODELS = tuple(n for n in model_names() if all(_rules(n)))


@functools.partial(jax.jit, static_argnames=("name", "mesh", "chunk_size"))
def _ntk_jit(P, frozen, U1, U2, *, name, mesh, chunk_size):
    return _rules(name)[0](P, frozen, U1, U2, sharded_reducers(mesh, chunk_size))


@functools.partial(jax.jit, static_argnames=("name", "mesh", "chunk_size"))
def _out_jit(P, frozen, U, *, name, mesh, chunk_size):
    return _rules(name)[1](P, frozen, U, sharded_reducers(mesh, chunk_size))


@functools.partial(jax.jit, static_argnames=("mesh", "chunk_size"))
def _checks_jit(P, U, *, mesh, chunk_size):
    finite = jnp.logical_and(sharded_row_sum(lambda P_c: jnp.sum(~jnp.isfinite(P_c)), (P,), mesh=mesh,
                                             chunk_size=chunk_size) == 0, jnp.all(jnp.isfinite(U)))
    z = _sharded_max(lambda P_c: jnp.max(P_c @ U.T), (P,), mesh=mesh, chunk_size=chunk_size)
    return finite, z


@jax.jit
def _all_finite(x):
    return jnp.all(jnp.isfinite(x))


def _validate(model, P, frozen, U1, U2, mesh, chunk_size):
    """Shape, finiteness and logit-overflow checks with device-side reductions only."""
    model = get_model(model)
    if model.name not in SHARDED_MODELS:
        raise _v.InputError(f"model {model.name!r} has no row-sharded rule; sharded models: "
                            f"{', '.join(SHARDED_MODELS)} (use theory.structured_ntk on one device)")
    P, U1, U2 = check_model_shapes(P, U1, U2)
    chunk_size = _v.check_count("chunk_size", chunk_size)
    mesh = mesh or device_mesh()
    if not isinstance(mesh, Mesh) or AXIS not in mesh.axis_names:
        raise _v.InputError(f"mesh must be a jax.sharding.Mesh with an axis {AXIS!r} (see device_mesh)")
    U = U1 if U2 is None else jnp.concatenate([U1, U2])
    finite, z = _checks_jit(P, U, mesh=mesh, chunk_size=chunk_size)
    if not bool(finite):
        raise _v.InputError("P or U contains NaN or infinite values")
    if not isinstance(frozen, model.frozen_type):
        raise _v.InputError(f"frozen must be the {model.frozen_type.__name__} of model {model.name!r} "
                            f"(from theory.init_model), got {type(frozen).__name__}")
    for key in frozen.field_names():
        if not bool(_all_finite(jnp.asarray(getattr(frozen, key)))):
            raise _v.InputError(f"frozen.{key} contains NaN or infinite values")
    if model.logit_multiple:
        _v.check_logits_fit("P and U", float(z), P.dtype, multiple=model.logit_multiple)
    return model, P, U1, U2, mesh, chunk_size


def sharded_structured_ntk(model, P, frozen, U1, U2=None, *, mesh: Mesh | None = None,
                           chunk_size: int = DEFAULT_CHUNK):
    """:func:`theory.structured_ntk` with the prefix rows split over ``mesh`` (default: all devices).

    Args: model (one of :data:`SHARDED_MODELS`); P (m, d); frozen; U1 (n1, d); U2 (n2, d) or
    None; mesh; chunk_size.  Returns: the full kernel ``(n1, n2, k, k)``, replicated on every
    device.  Raises: InputError (shapes, NaN/inf, an unsharded model, a bad mesh) or
    LogitOverflowError, checked with device-side reductions only.
    """
    model, P, U1, U2, mesh, chunk_size = _validate(model, P, frozen, U1, U2, mesh, chunk_size)
    return _ntk_jit(P, frozen, U1, U2, name=model.name, mesh=mesh, chunk_size=chunk_size)


def sharded_model_outputs(model, P, frozen, U, *, mesh: Mesh | None = None, chunk_size: int = DEFAULT_CHUNK):
    """:func:`theory.model_outputs` with the prefix rows split over ``mesh``.

    Args: as :func:`sharded_structured_ntk`, with inputs U (n, d).  Returns: outputs (n, k),
    replicated.  Raises: as :func:`sharded_structured_ntk`.
    """
    model, P, U, _, mesh, chunk_size = _validate(model, P, frozen, U, None, mesh, chunk_size)
    return _out_jit(P, frozen, U, name=model.name, mesh=mesh, chunk_size=chunk_size)


@functools.partial(jax.jit, static_argnames=("causal", "mesh", "chunk_size"))
def _prefix_attention_jit(X, P, W_Q, W_K, W_V, *, causal, mesh, chunk_size):
    Q, scale, z_X, V_X = input_block(X, W_Q, W_K, W_V, causal)
    mx_P, s_P, o_P = sharded_online_softmax(lambda P_c: ((P_c @ W_K) @ Q.T) * scale, lambda P_c: P_c @ W_V, (P,),
                                            mesh=mesh, chunk_size=chunk_size)
    mx_X = jnp.max(z_X, axis=1)
    e_X = jnp.exp(z_X - mx_X[:, None])
    mx = jnp.maximum(mx_P, mx_X)
    c_P, c_X = jnp.exp(mx_P - mx), jnp.exp(mx_X - mx)
    s = s_P * c_P + jnp.sum(e_X, axis=1) * c_X
    o = o_P * c_P[:, None] + (e_X @ V_X) * c_X[:, None]
    return o / s[:, None]


def sharded_prefix_attention(X, P, W_Q, W_K, W_V, *, causal: bool = False, mesh: Mesh | None = None,
                             chunk_size: int = DEFAULT_CHUNK):
    """:func:`theory.prefix_attention` for one sequence ``X`` (L, d), the prefix rows split over ``mesh``.

    The prefix summary (max logit, normaliser, weighted values per query) is reduced across
    devices, then merged with the exact input-token block.

    Args: X (L, d); P (m, d); W_Q, W_K (d, d_k); W_V (d, d_v); causal; mesh; chunk_size.
    Returns: the attention output (L, d_v).  Raises: InputError (shapes, NaN/inf in X, P or weights).
    """
    X, P, W_Q, W_K, W_V = (jnp.asarray(a) for a in (X, P, W_Q, W_K, W_V))
    _v.check_matrix("P", P, cols=np.shape(X)[1] if np.ndim(X) == 2 else None)
    # Shapes and weights; P's values are checked on the devices (no host copy of P).
    check_attention_args(X, P[:1], W_Q, W_K, W_V, chunk_size)
    chunk_size = _v.check_count("chunk_size", chunk_size)
    mesh = mesh or device_mesh()
    if not bool(_checks_jit(P, jnp.zeros((1, P.shape[1]), P.dtype), mesh=mesh, chunk_size=chunk_size)[0]):
        raise _v.InputError("P contains NaN or infinite values")
    return _prefix_attention_jit(X, P, W_Q, W_K, W_V, causal=bool(causal), mesh=mesh, chunk_size=chunk_size)
