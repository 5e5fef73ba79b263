"""Many writers, one store (issue 22): a cell is claimed (O_EXCL) before it is computed, stale claims
are broken, and two concurrent ``sims run`` into one ``--out`` compute each cell once and end with
the same verdict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import sims_toy
import sims.core as runner
from cli_runner import invoke
from sims.core import cellfile, claims, store
from sims.experiments import get

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import sims_toy
sims_toy.SLEEP_PER_BATCH[0] = {sleep}
from sims.cli.app import main
main(sys.argv[1:])
"""


def _spawn(out: Path, args: list[str], sleep: float = 0.3) -> subprocess.Popen:
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1", PREFIX_NTK_COMPILE_CACHE="off", COLUMNS="200")
    return subprocess.Popen(
        [sys.executable, "-c", _SCRIPT.format(tests=str(TESTS), sleep=sleep), "run", "toy", "--out", str(out), *args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )


def test_claim_is_exclusive_and_released(tmp_path):
    a = claims.claim(tmp_path, "toy", "c1")
    assert a is not None and claims.holder(a.path)["pid"] == os.getpid()
    assert claims.claim(tmp_path, "toy", "c1") is None  # held (by this live process): not stale
    claims.release(a)
    assert not a.path.exists()
    b = claims.claim(tmp_path, "toy", "c1")
    assert b is not None and b.token != a.token
    claims.release(a)  # an old claim's release leaves the new holder's claim alone
    assert b.path.exists()


def test_stale_claims_are_broken(tmp_path):
    path = claims.claim_path(tmp_path, "toy", "c1")
    path.parent.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    path.write_text(json.dumps({"pid": int(dead.stdout), "host": claims.HOST, "token": "x"}))
    assert claims.is_stale(path)
    c = claims.claim(tmp_path, "toy", "c1")
    assert c is not None and claims.holder(path)["pid"] == os.getpid()
    claims.release(c)
    # Another host's claim: live until its file is older than stale_after.
    path.write_text(json.dumps({"pid": 1, "host": "elsewhere", "token": "y"}))
    assert not claims.is_stale(path, stale_after=60) and claims.claim(tmp_path, "toy", "c1", stale_after=60) is None
    old = time.time() - 120
    os.utime(path, (old, old))
    assert claims.is_stale(path, stale_after=60)
    assert claims.claim(tmp_path, "toy", "c1", stale_after=60) is not None
    # Another live process of this host is never stale, however old its file.
    path.write_text(json.dumps({"pid": os.getppid(), "host": claims.HOST, "token": "z"}))
    os.utime(path, (old, old))
    assert not claims.is_stale(path, stale_after=60)
    # This process's own claim is live while a run here holds it, stale once none does (a run that
    # failed while writing it, or lost track of it): a resume in the same process must not wait on it.
    path.unlink()
    mine = claims.claim(tmp_path, "toy", "c1")
    assert mine is not None and not claims.is_stale(path)
    path.write_text(json.dumps({"pid": os.getpid(), "host": claims.HOST, "token": "orphan"}))
    assert claims.is_stale(path)
    claims.release(mine)


def test_run_skips_cells_held_by_another_and_waits_for_them(tmp_path):
    exp = get("toy")
    cfg = exp.config(x=(0.0, 1.0), seeds=1)
    p = runner.plan(exp, cfg, out=tmp_path)
    held = p.cells[0]
    # Another process holds cell 0 (this host, a live pid: our parent).
    path = claims.claim_path(tmp_path, "toy", held.cell_id)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"pid": os.getppid(), "host": claims.HOST, "token": "other"}))
    waits = []

    def on_event(e):
        if isinstance(e, runner.Waiting):
            waits.append(e)
            if len(waits) == 2:  # the other process finishes the cell (as a second run would)
                arrays = exp.run(held.cell, key=runner.cell_key({k: v for k, v in held.cell.items() if k != "dtype"}))
                cellfile.write_cell(held.path, arrays, {"cell_id": held.cell_id, "cell": held.cell})
                path.unlink()

    sims_toy.CALLS.clear()
    res = runner.execute(p, on_event=on_event, poll_s=0.05)
    assert len(waits) >= 2
    assert sorted(store.cell_id(c) for c in sims_toy.CALLS) == sorted(pc.cell_id for pc in p.cells)  # each once
    assert res.computed == [p.cells[1].cell_id] and res.reused == [held.cell_id]
    assert not list(claims.claims_dir(tmp_path, "toy").iterdir())
    # A holder that dies: its cell is computed here.
    os.unlink(held.path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    path.write_text(json.dumps({"pid": int(dead.stdout), "host": claims.HOST, "token": "dead"}))
    res = runner.run(exp, cfg, out=tmp_path)
    assert res.computed == [held.cell_id]


def test_two_concurrent_runs_compute_each_cell_once(tmp_path):
    out = tmp_path / "shared"
    args = [a for i in range(8) for a in ("--x", str(i))] + ["--seeds", "1"]
    procs = [_spawn(out, args), _spawn(out, args)]
    texts = [p.communicate(timeout=300)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], texts
    computed = []
    for text in texts:
        line = next(ln for ln in text.splitlines() if "cell(s) computed" in ln)
        computed.append(int(line.split()[0]))
    assert sum(computed) == 8, texts  # each cell once, over both runs
    # ...each file written by exactly one of the two processes, and both found the same verdict.
    writers = {cellfile.read_cell(p)[1]["computed_by"]["pid"] for p in store.cells_dir(out, "toy").glob("*.npz")}
    assert len(writers) <= 2 and len(list(store.cells_dir(out, "toy").glob("*.npz"))) == 8
    verdicts = [[ln for ln in t.splitlines() if "PASS" in ln or "FAIL" in ln] for t in texts]
    assert verdicts[0] == verdicts[1] and verdicts[0]
    assert not list(claims.claims_dir(out, "toy").iterdir())
    ref = tmp_path / "ref"
    runner.run(get("toy"), get("toy").config(x=tuple(float(i) for i in range(8)), seeds=1), out=ref)
    for p in store.cells_dir(ref, "toy").glob("*.npz"):
        a, b = cellfile.read_cell(p)[0], cellfile.read_cell(store.cells_dir(out, "toy") / p.name)[0]
        assert all(np.array_equal(a[k], b[k]) for k in a)


def test_empty_claim_of_a_killed_writer_goes_stale_quickly(tmp_path):
    """A writer killed between creating its claim (O_EXCL) and writing it leaves an empty file: held
    for a short grace (a live writer fills it at once), then stale, not after STALE_AFTER_S (6 h)."""
    path = claims.claim_path(tmp_path, "toy", "c1")
    path.parent.mkdir(parents=True)
    path.write_text("")
    assert not claims.is_stale(path) and claims.claim(tmp_path, "toy", "c1") is None
    old = time.time() - claims.EMPTY_STALE_S - 5
    os.utime(path, (old, old))
    assert claims.is_stale(path)
    path.write_text('{"pid": 1, "host": "elsewhere", "token": "y"}')  # control: a full claim that old is live
    os.utime(path, (old, old))
    assert not claims.is_stale(path)
    path.write_text('{"pid": 1, "ho')  # cut short: as empty
    os.utime(path, (old, old))
    c = claims.claim(tmp_path, "toy", "c1")
    assert c is not None and claims.holder(path)["pid"] == os.getpid()
    claims.release(c)


def test_clean_stale_removes_only_dead_writers_claims(tmp_path):
    folder = claims.claims_dir(tmp_path, "toy")
    folder.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (folder / "dead.claim").write_text(json.dumps({"pid": int(dead.stdout), "host": claims.HOST, "token": "d"}))
    (folder / "live.claim").write_text(json.dumps({"pid": os.getppid(), "host": claims.HOST, "token": "l"}))
    (folder / ".gone.claim.stale-abc").write_text("")  # a breaker killed between its rename and unlink
    mine = claims.claim(tmp_path, "toy", "mine")
    assert claims.clean_stale(tmp_path, "toy") == [folder / "dead.claim"]
    assert sorted(p.name for p in folder.iterdir()) == ["live.claim", "mine.claim"]
    claims.release(mine)
    assert claims.clean_stale(tmp_path / "nothing-here", "toy") == []


def _held_by(out: Path, pid: int) -> list[Path]:
    folder = claims.claims_dir(out, "toy")
    return [p for p in folder.glob("*.claim") if (claims.holder(p) or {}).get("pid") == pid] if folder.is_dir() else []


def test_writer_killed_mid_run_leaves_nothing_half_written_and_the_other_finishes(tmp_path):
    """Two writers share one folder; one is SIGKILLed while it holds a claim.  Every cell file left
    is whole, the survivor breaks the dead writer's claim and computes that cell, ``sims verify``
    passes, a rerun computes nothing (and removes any temporary the kill left), and the values
    are those of a one-process run."""
    out = tmp_path / "shared"
    n = 6
    args = [a for i in range(n) for a in ("--x", str(i))] + ["--seeds", "1"]
    victim, survivor = _spawn(out, args, sleep=0.4), _spawn(out, args, sleep=0.4)
    t0 = time.time()
    while not (_held_by(out, victim.pid) and list(store.cells_dir(out, "toy").glob("*.npz"))):
        assert victim.poll() is None and time.time() - t0 < 120, victim.stdout.read().decode()
        time.sleep(0.02)
    victim.kill()
    victim.wait(timeout=30)  # reaped: its pid is gone, so its claims are stale
    text = survivor.communicate(timeout=300)[0].decode()
    assert survivor.returncode == 0, text
    files = list(store.cells_dir(out, "toy").glob("*.npz"))
    assert len(files) == n and all(cellfile.cell_done(p) for p in files)
    # a claim left is the dead writer's, on a cell it wrote before the kill (the survivor waited for it)
    assert all(claims.is_stale(c) for c in claims.claims_dir(out, "toy").glob("*.claim"))
    r = invoke("verify", "--out", out)
    assert r.exit_code == 0, r.output
    sims_toy.CALLS.clear()
    r = invoke("run", "toy", "--out", out, *args, "-q")
    assert r.exit_code == 0 and sims_toy.CALLS == []
    assert not [p for p in store.cells_dir(out, "toy").iterdir() if p.name.startswith(".")]  # no temporaries left
    assert not list(claims.claims_dir(out, "toy").iterdir())  # nor claims
    ref = tmp_path / "ref"
    runner.run(get("toy"), get("toy").config(x=tuple(float(i) for i in range(n)), seeds=1), out=ref)
    for p in store.cells_dir(ref, "toy").glob("*.npz"):
        a, b = cellfile.read_cell(p)[0], cellfile.read_cell(store.cells_dir(out, "toy") / p.name)[0]
        assert all(np.array_equal(a[k], b[k]) for k in a)
