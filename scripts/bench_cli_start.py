"""Measure how long ``sims`` takes to start: wall time of a few commands, and where the import time goes.

    python scripts/bench_cli_start.py                   # sims --help, sims list kernel, 5 runs each
    python scripts/bench_cli_start.py --runs 10 --json /tmp/start.json
    python scripts/bench_cli_start.py --command=--help --command "run kernel --help"
    python scripts/bench_cli_start.py --root /path/to/other/checkout   # the same, for a before/after

Each command runs ``python -m sims ARGS`` in a fresh interpreter ``--runs`` times (after one
unmeasured warm-up run that fills the OS file cache) and reports the median, min and max wall
time; then one more run under ``python -X importtime`` lists the slowest top-level imports
(cumulative) and whether JAX, matplotlib or an experiment module was imported.  A measurement,
not a test: on a shared or busy machine the times are inflated; say so when you quote them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_COMMANDS = ("--help", "list kernel")
HEAVY = ("jax", "matplotlib", "scipy", "sims.experiments.", "theory", "figures")


def _env(root: Path) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(root), COLUMNS="100", PREFIX_NTK_COMPILE_CACHE="off")


def wall_times(args: list[str], runs: int, root: Path = ROOT) -> list[float]:
    """Wall seconds of ``python -m sims ARGS`` from the checkout ``root``, ``runs`` times (after one warm-up)."""
    cmd = [sys.executable, "-m", "sims", *args]
    times = []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        subprocess.run(cmd, env=_env(root), cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=False)
        if i:
            times.append(time.perf_counter() - t0)
    return times


def import_profile(args: list[str], top: int, root: Path = ROOT) -> dict:
    """``-X importtime`` of one run: total import seconds, the slowest top-level imports, heavy modules seen."""
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "sims", *args], env=_env(root), cwd=root,
                       capture_output=True, text=True, check=False)
    rows = []
    for line in r.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m:
            rows.append((int(m.group(2)), len(m.group(3)), m.group(4)))
    top_level = sorted((r for r in rows if r[1] <= 1), reverse=True)
    return {
        "import_s": sum(r[0] for r in rows if r[1] <= 1) / 1e6,
        "slowest": [(name, cum / 1e6) for cum, _, name in top_level[:top]],
        "heavy": sorted({name.split(".")[0] if not name.startswith("sims.") else name
                         for _, _, name in rows if name.startswith(HEAVY)}),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--command", action="append", help="sims arguments, quoted (repeatable; default: "
                   + ", ".join(repr(c) for c in DEFAULT_COMMANDS) + ")")
    p.add_argument("--runs", type=int, default=5, help="measured runs per command (default 5)")
    p.add_argument("--top", type=int, default=8, help="slowest imports to list (default 8)")
    p.add_argument("--root", type=Path, default=ROOT, help="checkout to measure (default: this one; another "
                   "worktree gives a before/after)")
    p.add_argument("--json", type=Path, help="also write the results here")
    a = p.parse_args(argv)
    if a.runs < 1:
        p.error("--runs must be at least 1")
    out = {"root": str(a.root), "machine": {"python": platform.python_version(), "platform": platform.platform(),
                       "cpus": os.cpu_count(), "load_avg": os.getloadavg()}, "commands": {}}
    for command in a.command or DEFAULT_COMMANDS:
        args = command.split()
        times = wall_times(args, a.runs, a.root)
        prof = import_profile(args, a.top, a.root)
        out["commands"][command] = {"wall_s": times, "median_s": statistics.median(times), "min_s": min(times),
                                    "max_s": max(times), **prof}
        print(f"sims {command}: median {statistics.median(times):.2f} s (min {min(times):.2f}, max {max(times):.2f}, "
              f"{a.runs} runs); imports {prof['import_s']:.2f} s")
        for name, s in prof["slowest"]:
            print(f"    {s:6.3f} s  {name}")
        print(f"    heavy modules imported: {', '.join(prof['heavy']) or 'none'}")
    print(f"load average {out['machine']['load_avg']} on {out['machine']['cpus']} CPUs")
    if a.json:
        a.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
