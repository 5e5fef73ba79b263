"""The convergence and kernel simulations at tiny sizes: claims pass, controls fail, CLI works."""

import functools

import jax.numpy as jnp
import numpy as np
import pytest

from cli_runner import invoke
from sims.core import runner
from sims.experiments import get
from sims.experiments import convergence as C
from sims.experiments import kernel as K
from sims.core.verdicts import rate_row

TINY = dict(m=(4000,), ladder=3, n=6, d=8, steps=40, log_every=20, seeds=3)


def run_cells(exp, cfg):
    out = []
    cells = exp.cells(cfg)
    for c in cells:
        c["dtype"] = "float64"
    groups = {}
    for c in cells:
        groups.setdefault(tuple(sorted((k, v) for k, v in c.items() if k != "seed")), []).append(c)
    for g in groups.values():
        keys = jnp.stack([runner.cell_key(c) for c in g])
        res = exp.run_batch(g, keys=keys) if exp.run_batch else [exp.run(c, key=k) for c, k in zip(g, keys)]
        out += list(zip(g, res))
    return out


@functools.lru_cache(maxsize=None)
def tiny_results(model):
    cfg = C.ConvergenceConfig(model=model, **TINY)
    return cfg, run_cells(get("convergence"), cfg)


def _interval(row):
    lo, hi = row.measured.split("[")[1].rstrip("]").split(",")
    return float(lo), float(hi)


def test_convergence_claims_hold_and_control_fails():
    cfg, res = tiny_results("prefix")
    rows = C.verdict(cfg, res)
    by = {r.claim.split(" ")[0]: r for r in rows}
    for claim in ("1.", "2.", "3.", "4.", "4b.", "5.", "6."):
        assert by[claim].passed, by[claim]
    for claim in ("1.", "4.", "5.", "6."):  # informative: each interval also rules out "no decay"
        assert _interval(by[claim])[1] < 0, by[claim]
    controls = [r for r in rows if r.claim.startswith("control")]
    assert len(controls) == 3 and all(r.passed for r in controls), controls


def test_convergence_exp_sign_exact_constant_and_bounds():
    # At these sizes exp-sign's slope intervals are too wide to be informative (its rates are
    # tested in tests/test_ntk_limit.py); the exact constant and claims 2-3 are checked here.
    cfg, res = tiny_results("exp-sign")
    by = {r.claim.split(" ")[0]: r for r in C.verdict(cfg, res)}
    for claim in ("1b.", "2.", "3."):
        assert by[claim].passed, by[claim]


def test_wrong_scaling_fails_the_rate_check():
    """The verdict's slope check rejects a quantity that does not decay like m^-1/2."""
    _, res = tiny_results("prefix")
    ms = sorted({c["m"] for c, _ in res if c["parametrization"] == "ntk"})
    by_m = {m: [a for c, a in res if c["m"] == m and c["parametrization"] == "ntk"] for m in ms}
    # Multiply the measured kernel drift by sqrt(m): a deliberately wrong (m^0) scaling.
    wrong = [[float(np.max(a["kernel_change"])) * np.sqrt(m) for a in by_m[m]] for m in ms]
    assert rate_row("w", "wrong", ms, wrong, predicted=-0.5, quantity="q").status in ("fail", "undecided")


def test_single_m_cannot_fit_a_rate():
    cfg = C.ConvergenceConfig(**{**TINY, "ladder": 1, "control": False})
    rows = C.verdict(cfg, run_cells(get("convergence"), cfg))
    slope_rows = [r for r in rows if "needs >= 2" in r.detail]
    assert slope_rows and all(r.status == "undecided" for r in slope_rows)


def test_convergence_bad_config():
    with pytest.raises(ValueError, match="multiple of log_every"):
        C.ConvergenceConfig(steps=45, log_every=20)
    with pytest.raises(ValueError, match="k must be 1"):
        C.ConvergenceConfig(model="exp-sign", k=2)


def test_kernel_experiment_verdict():
    cfg = K.KernelConfig(m=(500, 2000, 8000), n=5, d=6, seeds=4)
    rows = K.verdict(cfg, run_cells(get("kernel"), cfg))
    assert len(rows) == 10 and all(r.passed for r in rows), [r for r in rows if not r.passed]


def test_cli_convergence_run_resume_and_errors(tmp_path):
    args = ["run", "convergence", "--m", "2e3", "--ladder", "2", "--n", "4", "--d", "6", "--steps", "20",
            "--log-every", "10", "--seeds", "2", "--no-control", "--out", str(tmp_path)]
    first = invoke(*args)
    assert first.exit_code in (0, 1), first.output
    files = sorted((tmp_path / "convergence" / "cells").glob("*.npz"))
    assert len(files) == 4
    before = {f.name: f.read_bytes() for f in files}
    again = invoke(*args)
    assert "0 computed" in again.output.replace("0 cell(s) computed", "0 computed")
    assert {f.name: f.read_bytes() for f in files} == before
    bad = invoke("run", "convergence", "--m", "1.5", "--out", tmp_path)
    assert bad.exit_code == 2 and "--m" in bad.output
    dry = invoke("run", "convergence", "--m", "1e5", "--dry-run", "--out", tmp_path / "dry")
    assert dry.exit_code == 0 and not (tmp_path / "dry").exists()


def test_cli_bench_ntk(tmp_path):
    res = invoke("bench", "ntk", "--m", "300", "--n", "4", "--d", "3", "--repeats", "1", "--out", tmp_path)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "bench" / "ntk-float64.md").read_text().startswith("| model |")
    bad = invoke("bench", "ntk", "--m", "-3", "--out", tmp_path)
    assert bad.exit_code == 2
    # an unknown model or precision is refused up front (it used to surface as a traceback)
    for args in (["--model", "foo"], ["--precision", "float16"]):
        bad = invoke("bench", "ntk", *args, "--out", tmp_path / "bad")
        assert bad.exit_code == 2 and "error:" in bad.output, bad.output
    assert not (tmp_path / "bad").exists()
