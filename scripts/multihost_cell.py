"""One cell across hosts: the ``prefix`` model's structured NTK and one gradient step, its prefix rows
split over the processes of a ``jax.distributed`` job (docs/scaling.md, "Across hosts").

    # on each of N hosts (here: two processes on one machine), process i of N:
    python scripts/multihost_cell.py --coordinator host0:12345 --processes N --process-id i --out cell.json

Each process starts JAX with ``jax.distributed.initialize`` (CPU collectives through gloo), builds
the global one-axis mesh over every process's devices, creates only its own rows of P (and of the
per-row frozen arrays) with ``jax.make_array_from_callback``, and computes: the structured NTK
``H`` (``theory.scaling.sharding.sharded_structured_ntk``, replicated), the outputs ``F``, and one
gradient-descent step ``P - eta * grad L(P)`` of ``L = 1/2 sum ||F(P; u_i) - y_i||^2``, partitioned
by XLA across the processes.  Process 0 writes the results as JSON (the only writer); the test
(``tests/test_multihost.py``) compares them with one process's ``theory.structured_ntk`` and
gradient, to 1e-10.  On Slurm: ``srun --ntasks N python scripts/multihost_cell.py --out cell.json``
(``jax.distributed.initialize()`` reads the job's coordinator, count and rank itself).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def problem(m: int, n: int, d: int):
    """The cell's data, the same in every process (and in the single-process reference)."""
    import jax
    import jax.numpy as jnp

    import theory as T
    from theory.kernels import prefix

    P, frozen = T.init_model("prefix", key=jax.random.key(0), m=m, d=d, k=1)
    kU, ky, kV = jax.random.split(jax.random.key(1), 3)
    frozen = frozen.replace(V=prefix.readout(key=kV, d=d, k=1, dtype=jnp.float64))  # a nonzero readout
    U = jax.random.normal(kU, (n, d), jnp.float64) / jnp.sqrt(d)
    y = jax.random.normal(ky, (n, 1), jnp.float64)
    return P, frozen, U, y


def loss_fn(model, frozen, U, y):
    import jax
    import jax.numpy as jnp

    def loss(P):
        F = jax.vmap(model.forward, in_axes=(None, None, 0))(P, frozen, U)
        return 0.5 * jnp.sum((F - y) ** 2)

    return loss


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--coordinator", help="HOST:PORT of process 0 (omit on Slurm/MPI: detected)")
    ap.add_argument("--processes", type=int)
    ap.add_argument("--process-id", type=int)
    ap.add_argument("--m", type=int, default=1000)
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--d", type=int, default=8)
    ap.add_argument("--eta", type=float, default=0.1)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=a.coordinator, num_processes=a.processes, process_id=a.process_id)

    import numpy as np
    from jax.experimental import multihost_utils

    import theory as T
    from sims.core import store
    from theory.scaling import sharding as S

    mesh = S.device_mesh()  # every process's devices, in the same order everywhere
    P_full, frozen_full, U, y = problem(a.m, a.n, a.d)
    model = T.get_model("prefix")

    def rows_of(x, axis=0):  # only this process's rows are materialised on its devices
        x = np.asarray(x)
        spec = [None] * x.ndim
        spec[axis] = S.AXIS
        sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(*spec))
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    P = rows_of(P_full)
    frozen = frozen_full.replace(**{k: (rows_of(getattr(frozen_full, k), model.row_axes[k]) if k in model.row_axes else
                                        jax.device_put(getattr(frozen_full, k), S.replicated(mesh)))
                                    for k in frozen_full.field_names()})
    U_r, y_r = (jax.device_put(v, S.replicated(mesh)) for v in (U, y))
    H = S.sharded_structured_ntk("prefix", P, frozen, U_r, mesh=mesh)
    F = S.sharded_model_outputs("prefix", P, frozen, U_r, mesh=mesh)
    # Arrays spanning processes must be arguments of a jitted function, never closed over.
    step = jax.jit(lambda P, frozen, U, y: P - a.eta * jax.grad(loss_fn(model, frozen, U, y))(P))
    P1 = multihost_utils.process_allgather(step(P, frozen, U_r, y_r), tiled=True)
    if jax.process_index() == 0:
        result = {"processes": jax.process_count(), "devices": len(jax.devices()),
                  "local_rows": int(P.addressable_shards[0].data.shape[0]),
                  "H": np.asarray(H.addressable_data(0)).tolist(), "F": np.asarray(F.addressable_data(0)).tolist(),
                  "P1": np.asarray(P1).tolist()}
        store.atomic_write_text(a.out, json.dumps(result))
    jax.distributed.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
