"""One cell across hosts (issue 22): two local processes under ``jax.distributed`` (CPU collectives
through gloo) compute the ``prefix`` model's structured NTK, outputs and a gradient step with the
prefix rows split between them (``scripts/multihost_cell.py``, the recipe of docs/scaling.md), equal
to one process's values to 1e-10.  Negative control: a step with eta 1% off is far outside 1e-10.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np

import theory as T

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "multihost_cell.py"


def _script():
    spec = importlib.util.spec_from_file_location("multihost_cell", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_one_cell_match_one_process(tmp_path):
    m, n, d, eta = 1000, 6, 8, 0.1
    out = tmp_path / "cell.json"
    port = _free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="", PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, str(SCRIPT), "--coordinator", f"127.0.0.1:{port}", "--processes", "2",
                               "--process-id", str(i), "--m", str(m), "--n", str(n), "--d", str(d), "--eta", str(eta),
                               "--out", str(out)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for i in range(2)]
    try:
        logs = [p.communicate(timeout=240)[0].decode() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    got = json.loads(out.read_text())
    assert got["processes"] == 2 and got["devices"] == 2 and got["local_rows"] == m // 2  # rows really split

    mod = _script()
    P, frozen, U, y = mod.problem(m, n, d)
    model = T.get_model("prefix")
    H = np.asarray(T.structured_ntk("prefix", P, frozen, U))
    F = np.asarray(T.model_outputs("prefix", P, frozen, U))
    grad = jax.jit(jax.grad(mod.loss_fn(model, frozen, U, y)))(P)
    P1 = np.asarray(P - eta * grad)

    def rel(a, b):  # relative to the largest entry, or absolute below 1 (F is 0 at P = P0 by construction)
        return float(np.max(np.abs(np.asarray(a) - b)) / max(float(np.max(np.abs(b))), 1.0))

    assert rel(got["H"], H) < 1e-10 and rel(got["F"], F) < 1e-10
    assert rel(got["P1"], P1) < 1e-10
    assert float(np.max(np.abs(P1 - np.asarray(P)))) > 0  # the step moved the rows
    assert rel(got["P1"], np.asarray(P - 1.01 * eta * grad)) > 1e-10  # negative control
