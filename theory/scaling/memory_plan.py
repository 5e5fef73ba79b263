"""Memory planning for the structured NTK: its bytes per device before a run, and the chunk that fits.

:func:`estimate_ntk_bytes` counts, per device, P and the per-row frozen arrays, the chunk working
set of the streamed reduction (:func:`theory.streaming.row_chunk_reduce`, which evaluates
:data:`~theory.streaming.LANES` chunks per loop step), the GEMM accumulators and the output.  It is
calibrated against XLA's own ``memory_analysis`` (``tests/test_sharding.py`` checks that it is
never below it).  :func:`choose_chunk_size` picks the largest power-of-two chunk within a budget,
or refuses with :class:`NtkMemoryError`, whose message gives the figure and the smallest change
that would fit (more devices, float32, blocks of fewer inputs).  Pure functions of the sizes:
nothing here allocates.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from theory import validation as _v
from theory.kernels.models import get_model
from theory.streaming import DEFAULT_CHUNK, LANES

__all__ = ["NtkMemory", "NtkMemoryError", "estimate_ntk_bytes", "choose_chunk_size"]


class NtkMemory(NamedTuple):
    """Bytes per device of a structured NTK: inputs (P and per-row frozen), working set, output."""

    inputs: int
    working: int
    output: int
    total: int
    chunk_size: int
    devices: int


class NtkMemoryError(MemoryError):
    """A structured NTK cannot fit the budget at any chunk size; the message says what would."""


def _sizes(model):
    """The model's size facts (declared in its module), or InputError if it has none."""
    model = get_model(model)
    if model.chunk_numbers is None or model.operand_width is None or model.frozen_per_row is None:
        raise _v.InputError(f"no memory model for {model.name!r}: its StylizedModel declares no chunk_numbers, "
                            "operand_width and frozen_per_row")
    return model


def estimate_ntk_bytes(model, *, m, n1, n2=None, d, k: int = 1, chunk_size: int = DEFAULT_CHUNK,
                       dtype=jnp.float64, devices: int = 1) -> NtkMemory:
    """Bytes per device of :func:`theory.structured_ntk` (``devices=1``) or its sharded version.

    An upper estimate (1.2 to 3.1 times XLA's own ``memory_analysis`` over the shapes measured):
    P and the per-row frozen arrays (m/D rows each when D divides m, else all m), the chunk working set
    (``(LANES + 0.25) x chunk x inputs x`` the model's numbers per row and input: one set for each
    of the :data:`~theory.streaming.LANES` chunks a loop step evaluates at once, and a quarter
    for the ragged last chunk), four copies of the GEMM accumulator and the output ``(n1, n2, k, k)``.
    The model's numbers (``operand_width``, ``chunk_numbers``, ``frozen_per_row``) are read
    from its :class:`theory.StylizedModel`, where its module declares them.

    Args:
        model: a registered name or a :class:`theory.StylizedModel` declaring its sizes.
        m, n1, d, k: prefix length, inputs, feature and output dimensions (integers >= 1).
        n2: inputs of the second argument; None means the kernel of U1 with itself (one
            operand instead of two).
        chunk_size: rows per chunk; dtype: float32 or float64; devices: D, the row shards.

    Returns:
        :class:`NtkMemory` (bytes per device; ``chunk_size`` clipped to the rows held).

    Raises:
        InputError: an unknown model, one without sizes, or a bad size.
    """
    model = _sizes(model)
    m, n1, d, k = (_v.check_count(a, v) for a, v in (("m", m), ("n1", n1), ("d", d), ("k", k)))
    devices = _v.check_count("devices", devices)
    chunk_size = _v.check_count("chunk_size", chunk_size)
    same = n2 is None
    n2 = n1 if same else _v.check_count("n2", n2)
    b = jnp.dtype(dtype).itemsize
    # Rows held per device: an even share when D divides m; otherwise P cannot be placed as one
    # sharded array and each device receives all of it (choose m divisible by D).
    rows = m // devices if m % devices == 0 else m
    c = min(chunk_size, rows)
    inputs = b * rows * (d + model.frozen_per_row(k, d)) + b * (n1 + (0 if same else n2)) * d
    width = model.operand_width(k)
    working = int(b * ((LANES + 0.25) * c * (n1 + (0 if same else n2)) * model.chunk_numbers(k)
                       + 4 * (n1 * width) * (n2 * width) + 8 * (n1 + n2) * (k + 1)))
    output = b * n1 * n2 * k * k
    return NtkMemory(int(inputs), working, int(output), int(inputs + working + output), int(c), devices)


def _fmt(nbytes: float) -> str:
    return f"{nbytes / 2**30:.2f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.1f} MiB"


def choose_chunk_size(model, *, m, n1, n2=None, d, k: int = 1, budget: int, dtype=jnp.float64, devices: int = 1,
                      max_chunk: int = DEFAULT_CHUNK) -> int:
    """The largest power-of-two chunk (<= ``max_chunk``) whose :func:`estimate_ntk_bytes` fits ``budget``.

    Args:
        model, m, n1, n2, d, k, dtype, devices: as :func:`estimate_ntk_bytes`.
        budget: bytes per device.
        max_chunk: the largest chunk considered (rounded down to a power of two).

    Returns:
        The chunk size, a power of two >= 1.

    Raises:
        NtkMemoryError: even one row per chunk does not fit; the message gives the figure and
            the smallest change that fits: more devices (P is split), float32, or fewer inputs.
        InputError: as :func:`estimate_ntk_bytes`, or a bad budget.
    """
    budget = _v.check_count("budget", budget)
    max_chunk = _v.check_count("max_chunk", max_chunk)
    kw = dict(m=m, n1=n1, n2=n2, d=d, k=k, dtype=dtype, devices=devices)
    c = 1 << (max_chunk.bit_length() - 1)
    while c >= 1:
        if estimate_ntk_bytes(model, chunk_size=c, **kw).total <= budget:
            return c
        c //= 2
    need = estimate_ntk_bytes(model, chunk_size=1, **kw)
    options = []
    D = int(devices)
    for more in (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024):
        if estimate_ntk_bytes(model, chunk_size=1, **{**kw, "devices": D * more}).total <= budget:
            options.append(f"shard the rows over >= {D * more} devices (jax.distributed, theory.scaling.sharding)")
            break
    if jnp.dtype(dtype) == jnp.float64 and estimate_ntk_bytes(model, chunk_size=1, **{**kw, "dtype": jnp.float32}).total <= budget:
        options.append("use float32")
    n = int(n1)
    while n > 1 and estimate_ntk_bytes(model, chunk_size=1, **{**kw, "n1": n, "n2": None if n2 is None else min(int(n2), n)}).total > budget:
        n //= 2
    if n < int(n1) and estimate_ntk_bytes(model, chunk_size=1, **{**kw, "n1": n, "n2": None if n2 is None else min(int(n2), n)}).total <= budget:
        options.append(f"compute the kernel in blocks of <= {n} inputs")
    raise NtkMemoryError(
        f"structured NTK of {get_model(model).name!r} (m={int(m)}, n1={int(n1)}, n2={n2 if n2 is not None else int(n1)}, "
        f"d={int(d)}, k={int(k)}, {jnp.dtype(dtype).name}, {D} device(s)) needs {_fmt(need.total)} per device even "
        f"with one row per chunk (P and frozen rows {_fmt(need.inputs)}, kernel {_fmt(need.output)}), over the "
        f"budget of {_fmt(budget)}; " + ("to fit: " + "; or ".join(options) if options else "no single change fits")
    )
