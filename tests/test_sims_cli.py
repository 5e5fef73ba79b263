"""The ``sims`` CLI end to end, on the toy experiment of ``tests/sims_toy.py``."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

import sims.experiments
import sims_toy
from cli_runner import invoke
from sims.cli import app as cli
from sims.core import cellfile
from sims.core.experiment import REGISTRY

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def cell_files(out: Path) -> list[Path]:
    """Finished cell files; a SIGKILL mid-write leaves a dot-named temporary, which is not one."""
    d = out / "toy" / "cells"
    return sorted(p for p in d.iterdir() if not p.name.startswith(".")) if d.is_dir() else []


def temp_files(out: Path) -> list[str]:
    d = out / "toy" / "cells"
    return sorted(p.name for p in d.iterdir() if p.name.startswith(".")) if d.is_dir() else []


def arrays_by_id(out: Path) -> dict[str, dict[str, bytes]]:
    got = {}
    for p in cell_files(out):
        arrays, meta = cellfile.read_cell(p)
        assert meta["cell_id"] == p.stem
        got[p.stem] = {k: v.tobytes() for k, v in arrays.items()}
    return got


@pytest.fixture(autouse=True)
def _fresh_calls():
    sims_toy.CALLS.clear()
    yield
    sims_toy.CALLS.clear()


# ----------------------------------------------------------------------------- run, rerun, manifest


def test_run_then_rerun_skips_and_matches(tmp_path):
    r = invoke("run", "toy", "--out", tmp_path, "--x", "0", "--x", "1", "--seeds", "2", "-q")
    assert r.exit_code == 0, r.output
    assert "mean near x" in r.stdout and "PASS" in r.stdout
    assert len(cell_files(tmp_path)) == 4 and len(sims_toy.CALLS) == 4
    first = arrays_by_id(tmp_path)
    raw = {p.name: p.read_bytes() for p in cell_files(tmp_path)}

    r = invoke("run", "toy", "--out", tmp_path, "--x", "0", "--x", "1", "--seeds", "2")
    assert r.exit_code == 0, r.output
    assert len(sims_toy.CALLS) == 4  # nothing recomputed
    assert "0 cell(s) computed, 4 reused" in r.stdout
    assert {p.name: p.read_bytes() for p in cell_files(tmp_path)} == raw  # files untouched

    # A lost cell is recomputed, with the very same numbers.
    victim = cell_files(tmp_path)[1]
    victim.unlink()
    r = invoke("run", "toy", "--out", tmp_path, "--x", "0", "--x", "1", "--seeds", "2", "-q")
    assert r.exit_code == 0 and len(sims_toy.CALLS) == 5
    assert arrays_by_id(tmp_path) == first


def test_manifest_and_cell_metadata(tmp_path):
    r = invoke("run", "toy", "--out", tmp_path, "--x", "0.5", "--n", "16", "--seeds", "3", "-q")
    assert r.exit_code == 0, r.output
    runs = list((tmp_path / "toy" / "runs").iterdir())
    assert len(runs) == 1
    m = json.loads(runs[0].read_text())
    assert m["run_id"] == runs[0].stem and m["experiment"] == "toy" and m["precision"] == "float64"
    assert m["config"]["x"] == [0.5] and m["config"]["n"] == [16] and m["config"]["seeds"] == 3
    assert sorted(m["cell_ids"]) == [p.stem for p in cell_files(tmp_path)]
    assert [c["status"] for c in m["cells"]] == ["computed"] * 3
    assert m["counts"] == {"cells": 3, "computed": 3, "reused": 0}
    assert [row["claim"] for row in m["verdict"]] == ["mean near x", "dtype"] and m["passed"] is True
    prov = m["provenance"]
    assert set(prov["versions"]) == {"python", "jax", "jaxlib", "numpy", "prefix-ntk"}
    assert prov["git"]["revision"]  # a sha, or "unknown" outside a git checkout with commits
    assert prov["device"]["platform"] == "cpu" and prov["device"]["kind"]
    assert prov["dtype"] == "float64" and prov["jax_enable_x64"] is True
    assert m["started"] <= m["finished"]

    arrays, meta = cellfile.read_cell(cell_files(tmp_path)[0])
    assert arrays["samples"].shape == (16,) and arrays["samples"].dtype == np.float64
    assert arrays["stat"].shape == ()
    assert meta["experiment"] == "toy" and meta["cell_id"] == cell_files(tmp_path)[0].stem
    assert meta["cell"]["x"] == 0.5 and meta["cell"]["dtype"] == "float64" and meta["seed"] == meta["cell"]["seed"]
    assert meta["run_id"] == m["run_id"] and meta["dtype"] == "float64"
    assert meta["provenance"]["versions"] == prov["versions"]
    assert meta["started"] <= meta["finished"] and meta["elapsed_s"] >= 0

    # The same command (counts written differently) maps to the same run.
    r = invoke("run", "toy", "--out", tmp_path, "--x", "0.5", "--n", "1.6e1", "--seeds", "3.0", "-q")
    assert r.exit_code == 0
    assert [p.stem for p in (tmp_path / "toy" / "runs").iterdir()] == [m["run_id"]]
    m2 = json.loads(runs[0].read_text())
    assert m2["counts"] == {"cells": 3, "computed": 0, "reused": 3}


def test_failed_claim_exits_1_and_is_stored(tmp_path):
    r = invoke("run", "toy", "--out", tmp_path, "--tol", "0", "-q")
    assert r.exit_code == 1
    assert "FAIL" in r.stdout and "1 of 2 claim(s) failed" in r.stdout
    m = json.loads(next((tmp_path / "toy" / "runs").iterdir()).read_text())
    assert m["passed"] is False and [row["passed"] for row in m["verdict"]] == [False, True]


def test_float32_precision(tmp_path):
    import jax

    r = invoke("run", "toy", "--out", tmp_path, "--precision", "float32", "--seeds", "1", "-q")
    assert r.exit_code == 0, r.output
    assert jax.config.jax_enable_x64  # the CLI restores the global switch
    ids32 = {p.stem for p in cell_files(tmp_path)}
    for p in cell_files(tmp_path):
        arrays, meta = cellfile.read_cell(p)
        assert arrays["samples"].dtype == np.float32 and meta["cell"]["dtype"] == "float32"
    r = invoke("run", "toy", "--out", tmp_path, "--seeds", "1", "-q")
    assert r.exit_code == 0
    assert len(cell_files(tmp_path)) == 2 * len(ids32)  # float64 cells are distinct


# ----------------------------------------------------------------------------- plans and bad input


def test_dry_run_writes_nothing(tmp_path):
    out = tmp_path / "res"
    r = invoke("run", "toy", "--out", out, "--x", "0", "--x", "3", "--dry-run")
    assert r.exit_code == 0, r.output
    assert not out.exists() and not sims_toy.CALLS
    assert "4 cell(s), 0 stored, 4 to run" in r.stdout and "to run" in r.stdout
    assert "peak estimate 2.0 KiB" in r.stdout  # two seeds of 1000 B in one batch
    invoke("run", "toy", "--out", out, "--x", "0", "-q")
    r = invoke("run", "toy", "--out", out, "--x", "0", "--x", "3", "--dry-run")
    assert "4 cell(s), 2 stored, 2 to run" in r.stdout
    for p in cell_files(out):
        assert p.stem in r.stdout


@pytest.mark.parametrize(
    ("opt", "value"),
    [("--seeds", "1.5"), ("--seeds", "-3"), ("--seeds", "0"), ("--n", "1.5"), ("--mem", "lots"), ("--n", "nan")],
)
def test_bad_counts_exit_2_naming_the_option(tmp_path, opt, value):
    r = invoke("run", "toy", "--out", tmp_path, opt, value)
    assert r.exit_code == 2
    assert f"{opt} must be an integer >= 1" in r.output
    assert not tmp_path.joinpath("toy").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mode", "median"], "--mode"),
        (["--x", "abc"], "--x"),
        (["--scale", "-1"], "scale must be >= 0"),
        (["--precision", "float16"], "--precision"),
        (["--bogus", "1"], "--bogus"),
    ],
)
def test_bad_usage_exit_2(tmp_path, args, message):
    r = invoke("run", "toy", "--out", tmp_path, *args)
    assert r.exit_code == 2 and message in r.output
    assert not tmp_path.joinpath("toy").exists()


def test_unknown_experiment_exit_2():
    r = invoke("run", "no-such-experiment")
    assert r.exit_code == 2


def test_would_not_fit_exit_3_before_any_work(tmp_path):
    for extra in ([], ["--dry-run"]):
        r = invoke("run", "toy", "--out", tmp_path, "--mem", "1e18", *extra)
        assert r.exit_code == 3, r.output
        assert "would not fit" in r.output and "888.2 PiB" in r.output
    assert not tmp_path.joinpath("toy").exists() and not sims_toy.CALLS


# ----------------------------------------------------------------------------- interruption and determinism


def _failing_toy(monkeypatch, exc, after_calls):
    calls = []
    real = sims_toy.run_batch

    def run_batch(cells, *, keys):
        calls.append(1)
        if len(calls) > after_calls:
            raise exc("stop here")
        return real(cells, keys=keys)

    monkeypatch.setitem(REGISTRY, "toy", dataclasses.replace(sims_toy.TOY, run_batch=run_batch))


@pytest.mark.parametrize(("exc", "code"), [(KeyboardInterrupt, 130), (RuntimeError, 4)])
def test_interrupted_run_leaves_complete_files_and_resumes(tmp_path, monkeypatch, exc, code):
    args = ["run", "toy", "--out", tmp_path, "--x", "0", "--x", "1", "--x", "2", "--seeds", "2", "-q"]
    ref = tmp_path / "ref"
    assert invoke(*args[:3], ref, *args[4:]).exit_code == 0
    sims_toy.CALLS.clear()

    with monkeypatch.context() as mp:
        _failing_toy(mp, exc, after_calls=1)
        r = invoke(*args)
    assert r.exit_code == code
    assert ("interrupted" if code == 130 else "crashed") in r.output
    assert not (tmp_path / "toy" / "runs").exists()  # no manifest for an unfinished run
    names = os.listdir(tmp_path / "toy" / "cells")
    assert len(names) == 2 and all(n.endswith(".npz") and not n.startswith(".") for n in names)
    for p in cell_files(tmp_path):
        cellfile.read_cell(p)

    sims_toy.CALLS.clear()
    r = invoke(*args)
    assert r.exit_code == 0 and len(sims_toy.CALLS) == 4  # only the missing cells ran
    assert arrays_by_id(tmp_path) == arrays_by_id(ref)


def test_same_cell_same_numbers_in_any_sweep(tmp_path, monkeypatch):
    a, b, c, d = (tmp_path / s for s in "abcd")
    assert invoke("run", "toy", "--out", a, "--x", "0", "--x", "1", "--x", "2", "--seeds", "3", "-q").exit_code == 0
    assert invoke("run", "toy", "--out", b, "--x", "2", "--x", "0", "--seeds", "3", "-q").exit_code == 0
    assert invoke("run", "toy", "--out", c, "--x", "1", "--seeds", "1", "-q").exit_code == 0
    with monkeypatch.context() as mp:  # one cell per call instead of vmapped batches
        mp.setitem(REGISTRY, "toy", dataclasses.replace(sims_toy.TOY, run_batch=None, batch_key=None))
        assert invoke("run", "toy", "--out", d, "--x", "2", "--x", "1", "--seeds", "2", "-q").exit_code == 0
    full = arrays_by_id(a)
    for sub in (b, c, d):
        part = arrays_by_id(sub)
        assert part and all(full[k] == v for k, v in part.items())
    # and different seeds / shifts really differ
    assert len({v["samples"] for v in full.values()}) == len(full)


# ----------------------------------------------------------------------------- list, show, help, hook


def test_list(tmp_path):
    r = invoke("list")
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    assert [ln for ln in lines if ln.startswith("toy ")] and "Toy experiment" in r.stdout and "--seeds" not in r.stdout
    assert len(lines) == len(sims.experiments.names()) + 1  # one line per experiment, and where the options are
    r = invoke("list", "toy")
    assert r.exit_code == 0
    for text in ("toy", "--seeds", "--x", "repeatable", "mean|sum", "Samples per cell.", "sims run toy --x 0 --x 1 --seeds 3"):
        assert text in r.stdout
    assert invoke("list", "nope").exit_code == 2


def test_show(tmp_path):
    r = invoke("run", "toy", "--out", tmp_path, "--x", "0.25", "-q")
    manifest = next((tmp_path / "toy" / "runs").iterdir())
    rid = manifest.stem
    for ref in (rid, rid[:8], str(manifest)):
        r = invoke("show", ref, "--out", tmp_path)
        assert r.exit_code == 0, r.output
        for text in (rid, "config", "0.25", "provenance", "git revision", "jaxlib", "cpu", "float64", "mean near x", "PASS"):
            assert text in r.stdout, text
    r = invoke("show", rid, "--out", tmp_path, "--json")
    assert json.loads(r.stdout)["run_id"] == rid
    r = invoke("show", "toy-ffffffffffff", "--out", tmp_path)
    assert r.exit_code == 2 and "no run" in r.output


def test_help_has_examples_and_defaults():
    r = invoke("--help")
    assert r.exit_code == 0 and "Examples" in r.stdout and "Exit codes" in r.stdout
    r = invoke("run", "toy", "--help")
    assert r.exit_code == 0
    for text in ("--x", "--n", "--seeds", "--precision", "--dry-run", "--out", "--quiet", "default: 0.0, 1.0", "sims run toy --x 0 --x 1 --seeds 3", "sims run toy --dry-run"):
        assert text in r.stdout, text
    assert "toy" in invoke("run", "--help").stdout


def test_subcommand_hook(monkeypatch):
    def make() -> typer.Typer:
        app = typer.Typer()

        @app.command()
        def hello(n: int = 1) -> None:
            print("hello " * n)

        return app

    with pytest.raises(ValueError, match="already exists"):
        cli.build_app({"run": (make, "")})
    app = cli.build_app({"hello-group": (make, "Greetings.")})
    r = CliRunner().invoke(app, ["hello-group", "hello", "--n", "2"], catch_exceptions=False)
    assert r.exit_code == 0 and r.stdout.count("hello") == 2
    top = invoke("--help").stdout
    assert "bench" in top and "figures" in top  # the groups wired by import


# ----------------------------------------------------------------------------- real processes, real signals

_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import sims_toy
sims_toy.SLEEP_PER_BATCH[0] = 0.4
from sims.cli.app import main
main(sys.argv[1:])
"""


def _spawn(out: Path, args: list[str]) -> subprocess.Popen:
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1", PREFIX_NTK_COMPILE_CACHE="off")
    return subprocess.Popen(
        [sys.executable, "-c", _SCRIPT.format(tests=str(TESTS)), "run", "toy", "--out", str(out), *args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )


def _wait_for_files(out: Path, n: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    t0 = time.time()
    while len(cell_files(out)) < n:
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.time() - t0 < timeout
        time.sleep(0.05)


def test_killed_process_leaves_complete_files(tmp_path):
    xs = [a for i in range(6) for a in ("--x", str(i))]
    args = [*xs, "--seeds", "1", "-q"]
    out = tmp_path / "out"

    proc = _spawn(out, args)
    _wait_for_files(out, 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    after_kill = cell_files(out)
    for p in after_kill:
        cellfile.read_cell(p)  # every cell file that exists is complete
    # the only other thing a SIGKILL can leave is the temporary of the write it interrupted
    assert all(".tmp-" in name for name in temp_files(out)), temp_files(out)

    proc = _spawn(out, args)
    _wait_for_files(out, len(after_kill) + 1, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 130
    assert b"rerun the same command to resume" in proc.stdout.read()
    assert not temp_files(out)  # its own temporary removed, the one the SIGKILL left cleaned as stale

    done = len(cell_files(out))
    r = invoke("run", "toy", "--out", out, *args)
    assert r.exit_code == 0 and len(sims_toy.CALLS) == 6 - done
    ref = tmp_path / "ref"
    assert invoke("run", "toy", "--out", ref, *args).exit_code == 0
    assert arrays_by_id(out) == arrays_by_id(ref)
