"""Ctrl-C and SIGTERM in a real ``sims`` process: always exit 130 through a normal exit path.

The toy experiment of ``tests/sims_toy.py`` is given a first call that dispatches real XLA work
(a jitted loop of matrix products, compiled on that first call) and leaves it running
asynchronously, the situation in which leaving the interpreter used to end in a segmentation
fault (exit 139).  SIGINT is sent while JAX is being imported, during that first call (compiling
or computing), twice in a row, and as SIGTERM; every time the process must exit 130 with the
"rerun to resume" message, and every cell file it leaves must be complete.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sims.core import cellfile

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

_SCRIPT = r"""
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # a background shell may have ignored it
sys.path.insert(0, {tests!r})
from pathlib import Path
from sims import runtime
runtime.install()  # what main()'s run context does first; done here so the parent can signal right after the marker
print("started", flush=True)
from sims.cli.app import main
import jax, jax.numpy as jnp
import sims_toy
marker = Path({marker!r})
KEEP = []
real = sims_toy.run_batch

def run_batch(cells, *, keys):
    if not KEEP:
        step = jax.jit(lambda y: jax.lax.fori_loop(0, 400, lambda i, z: jnp.tanh(z @ z) / 2, y))
        marker.write_text("first call")
        KEEP.append(step(jnp.ones((300, 300)) / 300))  # compiled here, then left running
    return real(cells, keys=keys)

sims_toy.run_batch = run_batch
sims_toy.TOY = __import__("dataclasses").replace(sims_toy.TOY, run_batch=run_batch)
sims_toy.REGISTRY["toy"] = sims_toy.TOY
main(sys.argv[1:])
"""

ARGS = ["--x", "0", "--x", "1", "--x", "2", "--seeds", "2"]


def _spawn(tmp_path: Path) -> tuple[subprocess.Popen, Path, Path]:
    out, marker = tmp_path / "out", tmp_path / "marker"
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1", PREFIX_NTK_COMPILE_CACHE="off")
    proc = subprocess.Popen(
        [sys.executable, "-c", _SCRIPT.format(tests=str(TESTS), marker=str(marker)), "run", "toy", "--out", str(out),
         *ARGS],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    assert proc.stdout.readline().strip() == b"started"
    return proc, out, marker


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.time()
    while not path.exists():
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.time() - t0 < timeout
        time.sleep(0.01)


def _finish(proc: subprocess.Popen, out: Path) -> tuple[int, str, list[Path]]:
    code = proc.wait(timeout=120)
    text = proc.stdout.read().decode()
    cells = sorted((out / "toy" / "cells").glob("*.npz")) if (out / "toy" / "cells").is_dir() else []
    for p in cells:
        cellfile.read_cell(p)  # complete
    return code, text, cells


def _signal_at(moment: str, tmp_path: Path) -> tuple[int, str, list[Path]]:
    proc, out, marker = _spawn(tmp_path)
    if moment != "import":
        _wait_for(marker, proc)
    if moment == "sigterm":
        proc.send_signal(signal.SIGTERM)
    else:
        proc.send_signal(signal.SIGINT)
    if moment == "twice":
        time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
    return _finish(proc, out)


def test_sigint_during_the_first_call_finishes_it_and_exits_130(tmp_path):
    code, text, cells = _signal_at("first call", tmp_path)
    assert code == 130, text
    assert "stopping after the call in flight" in text and "rerun the same command to resume" in text
    assert len(cells) == 2  # the call in flight (two seeds of x=0) was finished and saved, no other started


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["import", "twice", "sigterm"])
def test_signals_at_other_moments_exit_130(tmp_path, moment):
    code, text, cells = _signal_at(moment, tmp_path)
    assert code == 130, text
    assert "Segmentation fault" not in text
    assert "interrupted" in text
    if moment == "import":
        assert not cells
    assert len(cells) <= 2
