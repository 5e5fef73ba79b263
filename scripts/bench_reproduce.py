"""Measure ``sims reproduce --quick`` (or any reproduce options): cold, then with every cell stored.

    python scripts/bench_reproduce.py --json /tmp/reproduce.json
    python scripts/bench_reproduce.py --json out.json -- --only kernel --only convergence

Runs ``sims reproduce`` into a fresh results folder with a fresh, empty compilation cache (cold:
every cell computed, every program compiled), then the same command again (every cell stored: only
the verdicts and the report are redone).  Prints both wall times, the exit codes and the per-run
wall times from the manifests, and writes them as JSON with ``--json PATH``.  A measurement, not a
test: on a shared or busy machine the times are inflated; say so when you quote them.
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

ROOT = Path(__file__).resolve().parents[1]


def _reproduce(args: list[str], out: Path, cache: Path) -> tuple[float, int, str]:
    env = dict(os.environ, PREFIX_NTK_COMPILE_CACHE=str(cache))
    cmd = [sys.executable, "-m", "sims", "reproduce", *args, "--out", str(out)]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode not in (0, 1):
        sys.stderr.write(r.stdout[-4000:] + r.stderr[-4000:])
        raise SystemExit(f"`{' '.join(cmd)}` exited {r.returncode}")
    return wall, r.returncode, r.stdout


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", type=Path, help="write the measurement here")
    p.add_argument("--keep", type=Path, help="results folder to use (kept; default: a temporary one)")
    p.add_argument("rest", nargs="*", help="sims reproduce options (after --)")
    a = p.parse_args()
    args = a.rest or ["--quick"]
    with tempfile.TemporaryDirectory(prefix="bench-reproduce-") as tmp:
        out = a.keep or Path(tmp) / "results"
        cache = Path(tmp) / "jax-cache"
        cold, code_cold, text = _reproduce(args, out, cache)
        stored, code_stored, _ = _reproduce(args, out, cache)
        runs = {}
        for path in sorted(out.glob("*/runs/*.json")):
            m = json.loads(path.read_text())
            runs[m["experiment"]] = {"run_id": m["run_id"], "elapsed_s": m.get("elapsed_s"),
                                     "cells": (m.get("counts") or {}).get("cells")}
        report = json.loads((out / "report" / "verdicts.json").read_text())["summary"]
    res = {"command": "sims reproduce " + " ".join(args), "cold_s": cold, "stored_s": stored,
           "exit_cold": code_cold, "exit_stored": code_stored, "runs": runs, "summary": report["total"],
           "cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
           "date": time.strftime("%Y-%m-%d")}
    print(text[-3000:])
    print(json.dumps({k: v for k, v in res.items() if k != "runs"}, indent=1))
    for name, r in runs.items():
        print(f"  {name:26s} {r['elapsed_s'] or 0:8.1f} s  ({r['cells']} cells)")
    if a.json:
        a.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
