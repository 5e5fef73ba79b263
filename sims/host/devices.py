"""Which devices a run uses: the one-axis row mesh handed to experiments that shard prefix rows.

``sims run NAME --devices N`` splits the m prefix rows of every cell over N local devices of
JAX's default backend (GPUs, TPU cores, or CPU devices faked with
``XLA_FLAGS=--xla_force_host_platform_device_count=N``).  Without ``--devices``, an experiment
that shards (``Experiment.shardable``) uses every local device and the others use one.  With one
device the run takes the single-device code path unchanged.

A cell's numbers do not depend on N beyond the order of floating-point sums (the tests hold
the sharded and single-device results to 1e-10 relative in float64), so a cell's id and result
file are the same whatever N; the number used is recorded in each cell's provenance.  The CLI
runs in one process: for several hosts use :mod:`theory.scaling.sharding` under ``jax.distributed``
(docs/scaling.md).
"""

from __future__ import annotations

from typing import Any

import jax

from theory.scaling.sharding import device_mesh
from theory.validation import InputError, check_count, show_number

__all__ = ["run_mesh", "mesh_size"]


def run_mesh(requested: Any, *, experiment: str, shardable: bool):
    """The row mesh for a run, or None for one device.  Bad requests raise ``InputError``.

    ``requested`` is the ``--devices`` value: None (the default rule above) or a positive integer
    no larger than the number of local devices; above 1 only for a shardable experiment.
    """
    available = jax.local_device_count()
    if requested is None:
        count = available if shardable else 1
    else:
        count = check_count("--devices", requested)
        if count > available:
            kinds = sorted({f"{d.platform} {getattr(d, 'device_kind', '')}".strip() for d in jax.local_devices()})
            raise InputError(
                f"--devices {show_number(count)} but only {available} local device(s) are visible ({', '.join(kinds)}); "
                f"use --devices {available} or fewer (CPU devices can be faked with "
                f"XLA_FLAGS=--xla_force_host_platform_device_count={count if count <= 4096 else 'N'}, set before JAX starts)"
            )
        if count > 1 and not shardable:
            raise InputError(f"{experiment} does not split its rows over devices; use --devices 1 (or leave it out)")
    if count == 1:
        return None
    return device_mesh(jax.local_devices()[:count])


def mesh_size(mesh) -> int:
    """Devices in a run mesh (1 for None)."""
    return 1 if mesh is None else int(mesh.devices.size)
