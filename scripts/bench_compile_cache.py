"""Measure what the persistent compilation cache saves: the main job cold, then warm, side by side.

    python scripts/bench_compile_cache.py                      # sims run convergence --m 1e5
    python scripts/bench_compile_cache.py -- kernel            # any `sims run` arguments after --

Runs the same ``sims run`` command twice, each into a fresh results folder, with one fresh
compilation cache: the first run (cold) compiles and fills the cache, the second (warm) loads
from it.  It prints both wall times, their ratio, the share of the cold run spent compiling
(estimated as cold minus warm) and whether every cell's arrays are bit-identical, and writes
the same as JSON with ``--json PATH``.  A measurement, not a test: on a shared or busy machine
the times are inflated; say so when you quote them.
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

from sims.core import cellfile, store  # noqa: E402


def _run(args: list[str], out: Path, cache: Path) -> tuple[float, int]:
    env = dict(os.environ)
    env.pop("PREFIX_NTK_COMPILE_CACHE", None)
    cmd = [sys.executable, "-m", "sims", "run", *args, "--out", str(out), "--compile-cache", str(cache), "-q"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if r.returncode not in (0, 1):
        sys.stderr.write(r.stderr)
        raise SystemExit(f"`{' '.join(cmd)}` exited {r.returncode}")
    return wall, r.returncode


def _cells(out: Path) -> dict[str, dict[str, bytes]]:
    got = {}
    for p in sorted(out.glob("*/cells/*.npz")):
        arrays, _ = cellfile.read_cell(p)
        got[p.stem] = {k: np.asarray(v).tobytes() for k, v in arrays.items()}
    return got


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path, help="also write the result here")
    ap.add_argument("--keep", type=Path, help="use this folder (kept) instead of a temporary one")
    ap.add_argument("sims_args", nargs="*", help="`sims run` arguments (default: convergence --m 1e5)")
    a = ap.parse_args(argv)
    args = a.sims_args or ["convergence", "--m", "1e5"]
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        base = a.keep or Path(tmp)
        cache = base / "cache"
        cold, code_cold = _run(args, base / "cold", cache)
        warm, code_warm = _run(args, base / "warm", cache)
        same = _cells(base / "cold") == _cells(base / "warm")
        n_cells = len(_cells(base / "cold"))
    res = {
        "command": "sims run " + " ".join(args),
        "cold_s": round(cold, 2),
        "warm_s": round(warm, 2),
        "warm_over_cold": round(warm / cold, 3),
        "compile_share_estimate": round(max(0.0, cold - warm) / cold, 3),
        "identical_numbers": same,
        "cells": n_cells,
        "exit_codes": [code_cold, code_warm],
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "load_avg": os.getloadavg() if hasattr(os, "getloadavg") else None},
    }
    print(f"{res['command']}: cold {cold:.1f} s, warm {warm:.1f} s (warm/cold {warm / cold:.2f}); "
          f"compilation ~{res['compile_share_estimate']:.0%} of the cold run; {n_cells} cells, "
          f"numbers {'identical' if same else 'DIFFER'}")
    if a.json:
        store.atomic_write_text(a.json, json.dumps(res, indent=2) + "\n")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
