"""Wall time of a sweep in one process against a local Dask cluster, and the Dask path's per-cell overhead.

    python scripts/bench_dask.py --workers 2 -- convergence --m 4000 --ladder 3 --steps 40 --log-every 20
    python scripts/bench_dask.py --workers 2 --json /tmp/bench_dask.json

Runs the same ``sims run`` command (default: the toy experiment's 32 cells, whose compute is
negligible, so that the difference is the overhead) into two fresh results folders: once in one
process, once with ``--workers N``; prints both wall times, the cells computed and whether every
cell's arrays are bit-identical.  The per-cell overhead is ``(dask wall - one-process wall -
cluster start) / cells``, the cluster start being measured alone (a LocalCluster of N workers
started and closed).  With it, the wall time of a sweep of C cells of t seconds each on W workers
projects to about ``start + C * (t / W + overhead)`` while the workers are the bottleneck (the
driver writes the files).  A measurement, not a test: on a shared machine the times are inflated.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sims.core import cellfile  # noqa: E402

_TOY = """
import sys
sys.path.insert(0, {tests!r})
import sims_toy
from sims.cli.app import main
main(sys.argv[1:])
"""
TOY_ARGS = ["toy", *[a for i in range(16) for a in ("--x", str(i))], "--seeds", "2"]


def _run(args: list[str], out: Path, extra: list[str]) -> float:
    cmd = [sys.executable, "-c", _TOY.format(tests=str(ROOT / "tests")), "run", *args, "--out", str(out), "-q", *extra]
    env = dict(os.environ, PREFIX_NTK_COMPILE_CACHE="off")
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode not in (0, 1):
        sys.stderr.write(r.stderr)
        raise SystemExit(f"`{' '.join(cmd[3:])}` exited {r.returncode}")
    return time.perf_counter() - t0


def _cells(out: Path) -> dict[str, dict[str, bytes]]:
    return {p.stem: {k: np.asarray(v).tobytes() for k, v in cellfile.read_cell(p)[0].items()}
            for p in sorted(out.glob("*/cells/*.npz"))}


def _cluster_start(workers: int) -> float:
    import distributed

    t0 = time.perf_counter()
    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=":0",
                                  silence_logs=40) as c, distributed.Client(c) as client:
        client.submit(lambda: 1).result()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", type=Path)
    ap.add_argument("sims_args", nargs="*", help="`sims run` arguments (default: toy, 32 cells)")
    a = ap.parse_args(argv)
    args = a.sims_args or TOY_ARGS
    with tempfile.TemporaryDirectory() as tmp:
        one, many = Path(tmp) / "one", Path(tmp) / "many"
        t_one = _run(args, one, [])
        t_many = _run(args, many, ["--workers", str(a.workers)])
        a_one, a_many = _cells(one), _cells(many)
    start = _cluster_start(a.workers)
    n = len(a_one)
    res = {"args": args, "workers": a.workers, "cells": n, "one_process_s": t_one, "dask_s": t_many,
           "cluster_start_s": start, "overhead_per_cell_s": (t_many - t_one - start) / max(n, 1),
           "bit_identical": a_one == a_many and n > 0, "machine": platform.machine(), "cpus": os.cpu_count()}
    print(f"{' '.join(args[:3])}...: {n} cells; one process {t_one:.1f} s, --workers {a.workers} {t_many:.1f} s "
          f"(cluster start {start:.1f} s, overhead {res['overhead_per_cell_s'] * 1e3:.0f} ms/cell); "
          f"bit-identical: {res['bit_identical']}")
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
