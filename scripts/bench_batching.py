"""What computing each cell by its own call costs against one vmapped call per batch (issue 22).

    python scripts/bench_batching.py                 # convergence, the SMALL preset's groups
    python scripts/bench_batching.py --m 16000 --json /tmp/bench_batching.json

``sims.experiments.convergence.run_batch`` computes the seeds of a batch one call each (one
compiled program per group, called per cell), so that a cell's bits do not depend on its
batch-mates.  This script times, for each (m, parametrization) group of the config, that path
against the previous one (``jax.vmap`` over the batch's keys, one call), both compiled first
and timed warm (best of ``--repeats``), and checks that the per-cell path gives the same bits
for a cell alone and inside its batch while the vmapped one does not.  A measurement, not a
test: on a shared machine the times are inflated; say so when you quote them.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import theory as T  # noqa: E402
from sims.core import planning as planner  # noqa: E402
from sims.experiments import convergence as C  # noqa: E402
from sims.experiments import get  # noqa: E402
from sims.experiments.presets import SMALL  # noqa: E402


def _args(c):
    U, y, V, _, _, eta = C.problem(c)
    m = int(c["m"])
    eta_run = c["control_lr"] * eta * m if c["parametrization"] == "mean-field" else eta
    static = dict(model=T.get_model(c["model"]), m=m, d=c["d"], k=c["k"], steps=c["steps"],
                  log_every=c["log_every"], parametrization=c["parametrization"])
    return (U, y, V, jnp.asarray(eta_run, U.dtype), jnp.asarray(c["sigma"], U.dtype)), static


def _best(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--m", type=int, default=SMALL["convergence"]["m"][0], help="largest m (ladder of 3 below)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    exp = get("convergence")
    cfg = exp.config(**{**SMALL["convergence"], "m": (a.m,), "seeds": a.seeds})
    p = planner.plan(exp, cfg, out="/nonexistent-bench-out", force=True)
    groups: dict = {}
    for pc in p.cells:
        groups.setdefault((pc.cell["m"], pc.cell["parametrization"]), []).append(pc.cell)
    rows = []
    for (m, par), cells in groups.items():
        args, static = _args(cells[0])
        keys = jnp.stack([planner.cell_key(c) for c in cells])
        vmapped = jax.jit(jax.vmap(lambda k: C.train_cell(k, *args, **static)))
        per_cell = functools.partial(C._train, **static)
        t_vmap = _best(lambda: vmapped(keys), a.repeats)
        t_loop = _best(lambda: [per_cell(keys[b], *args) for b in range(len(cells))], a.repeats)
        in_batch = exp.run_batch(cells, keys=keys)[-1]
        by_itself = exp.run_batch(cells[-1:], keys=keys[-1:])[0]
        v_full, v_last = vmapped(keys), jax.jit(jax.vmap(lambda k: C.train_cell(k, *args, **static)))(keys[-1:])
        rows.append({
            "m": m, "parametrization": par, "batch": len(cells),
            "vmap_s": t_vmap, "per_cell_s": t_loop, "ratio": t_loop / t_vmap,
            "per_cell_bits_equal": all(np.array_equal(in_batch[k], by_itself[k], equal_nan=True) for k in in_batch),
            "vmap_bits_equal": all(np.array_equal(v_full[k][-1], v_last[k][0], equal_nan=True) for k in v_full),
        })
        r = rows[-1]
        print(f"m={m:>6} {par:<10} batch {r['batch']}: vmap {r['vmap_s']*1e3:8.1f} ms, per cell {r['per_cell_s']*1e3:8.1f} ms "
              f"(x{r['ratio']:.2f}); bits alone == in batch: per cell {r['per_cell_bits_equal']}, vmap {r['vmap_bits_equal']}")
    total_v, total_l = sum(r["vmap_s"] for r in rows), sum(r["per_cell_s"] for r in rows)
    print(f"total: vmap {total_v:.3f} s, per cell {total_l:.3f} s (x{total_l / total_v:.2f})")
    if a.json:
        a.json.write_text(json.dumps({"machine": platform.machine(), "jax": jax.__version__, "rows": rows,
                                      "total_vmap_s": total_v, "total_per_cell_s": total_l}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
