"""``run_on_devices(script, count)``: run a Python script in a fresh process that sees ``count``
simulated CPU devices (the device count is fixed before JAX starts, so it cannot be changed in
the test process), and return the JSON it prints on its last ``RESULT `` line."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Backend optimisation off: a third less compile time (most of these runs); every path compared shares it.
FAST_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def run_on_devices(script: str, count: int, *, timeout: float = 400) -> dict:
    flags = f"--xla_force_host_platform_device_count={count} {FAST_FLAGS}"
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu", JAX_ENABLE_X64="1", COLUMNS="200")
    res = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=timeout)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")]
    assert res.returncode == 0 and lines, res.stderr[-4000:]
    return json.loads(lines[-1][len("RESULT "):])
