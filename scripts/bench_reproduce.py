"""Measure ``sims reproduce --quick`` (or any reproduce options): cold, then with every cell stored.

    python scripts/bench_reproduce.py --json /tmp/reproduce.json
    python scripts/bench_reproduce.py --repeats 5 --json out.json -- --only kernel --only convergence
    python scripts/bench_reproduce.py --keep /tmp/results --skip-cold    # stored runs of a kept folder only

Times whole processes from outside (start-up, imports and compilation included), each with
``perf_counter`` for the wall time and the operating system's accounting of the finished child
for its CPU time (user + system, every thread):

1. cold: ``sims reproduce`` into a fresh results folder with a fresh, empty compilation cache
   (every cell computed, every program compiled), once;
2. stored: the same command again over the same folder, ``--repeats`` times (every cell reused:
   only the plans, the verdicts and the report are redone); the median is the figure to quote;
3. report: ``sims report`` of that folder alone, once (the part of a stored run that draws the
   figures and writes the three files).

Prints the times, the exit codes, the load average before and after, and the per-run wall times
from the manifests, and writes them as JSON with ``--json PATH``.  A measurement, not a test: on a
shared or busy machine the times are inflated; say so (and the load average) when you quote them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _timed(cmd: list[str], env: dict[str, str]) -> dict:
    """Run ``cmd`` to its end; its wall time, CPU time (user + system of the child), exit code, output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if r.returncode not in (0, 1):
        sys.stderr.write(r.stdout[-4000:] + r.stderr[-4000:])
        raise SystemExit(f"`{' '.join(cmd)}` exited {r.returncode}")
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "exit": r.returncode, "stdout": r.stdout}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _spread(xs: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(xs), 2), "min": min(xs), "max": max(xs)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", type=Path, help="write the measurement here")
    p.add_argument("--keep", type=Path, help="results folder to use (kept; default: a temporary one)")
    p.add_argument("--repeats", type=int, default=3, help="stored runs to time (default 3)")
    p.add_argument("--skip-cold", action="store_true", help="no cold run: time the stored runs of --keep only")
    p.add_argument("rest", nargs="*", help="sims reproduce options (after --)")
    a = p.parse_args(argv)
    if a.repeats < 1:
        p.error("--repeats must be at least 1")
    if a.skip_cold and not a.keep:
        p.error("--skip-cold needs --keep (a folder whose cells are stored)")
    args = a.rest or ["--quick"]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-reproduce-") as tmp:
        out = a.keep or Path(tmp) / "results"
        cache = Path(tmp) / "jax-cache"
        env = dict(os.environ, PREFIX_NTK_COMPILE_CACHE=str(cache))
        reproduce = [sys.executable, "-m", "sims", "reproduce", *args, "--out", str(out)]
        cold = None if a.skip_cold else _timed(reproduce, env)
        stored = [_timed(reproduce, env) for _ in range(a.repeats)]
        report = _timed([sys.executable, "-m", "sims", "report", "--out", str(out)], env)
        runs = {}
        for path in sorted(out.glob("*/runs/*.json")):
            m = json.loads(path.read_text())
            runs[m["experiment"]] = {"run_id": m["run_id"], "elapsed_s": m.get("elapsed_s"),
                                     "cells": (m.get("counts") or {}).get("cells")}
        summary = json.loads((out / "report" / "verdicts.json").read_text())["summary"]
    res = {"command": "sims reproduce " + " ".join(args), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "cold": None if cold is None else {k: v for k, v in cold.items() if k != "stdout"},
           "stored": [{k: v for k, v in s.items() if k != "stdout"} for s in stored],
           "stored_wall_s": _spread([s["wall_s"] for s in stored]),
           "stored_cpu_s": _spread([s["cpu_s"] for s in stored]),
           "report": {k: v for k, v in report.items() if k != "stdout"},
           "runs": runs, "summary": summary["total"],
           "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in os.getloadavg()],
           "nice": os.nice(0), "cpus": os.cpu_count(), "cpu_model": _cpu_model(), "machine": platform.machine(),
           "python": platform.python_version()}
    print((cold or stored[0])["stdout"][-3000:])
    print(json.dumps({k: v for k, v in res.items() if k not in ("runs", "stored")}, indent=1))
    for name, r in runs.items():
        print(f"  {name:26s} {r['elapsed_s'] or 0:8.1f} s  ({r['cells']} cells)")
    if a.json:
        a.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
