"""sims experiment "reparam": cells, run and verdict at a tiny size (spec 5)."""

import json

import numpy as np
import pytest

from sims.core import runner
from sims.core.experiment import VerdictRow, get
from sims.experiments import reparam as R

TINY = dict(structures=("prompt", "nonshared"), n=(60, 120), replications=2, restarts=1, adam_steps=5,
            polish_steps=20, n_test=100)


def test_registered_and_cells():
    exp = get("reparam")
    assert exp.config is R.ReparamConfig
    cfg = R.ReparamConfig(**TINY)
    cells = exp.cells(cfg)
    assert len(cells) == 2 * 2 * 2 * 2  # structures x L x n x replications
    for c in cells:
        assert all(isinstance(v, (int, float, str, bool)) for v in c.values())
        json.dumps(c)
    assert {c["L"] for c in cells} == {2, 3} and {c["seed"] for c in cells} == {0, 1}
    quick = R.ReparamConfig(quick=True)
    assert quick.grid() == R.QUICK_N and quick.reps() == 8 and quick.starts() == 2
    full = R.ReparamConfig()
    assert full.grid()[0] == 1000 and full.grid()[-1] == 100_000 and full.reps() >= 20
    assert len(exp.cells(full)) == 4 * 2 * 5 * full.reps()
    assert exp.estimate_bytes(cells[0]) > 0


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="structures"):
        R.ReparamConfig(structures=("tied",))
    with pytest.raises(ValueError, match="extra"):
        R.ReparamConfig(extra=(-1,))
    with pytest.raises(ValueError, match="noise"):
        R.ReparamConfig(noise=0.0)
    with pytest.raises(ValueError, match="r must"):
        R.ReparamConfig(r=0.5)


def test_run_is_pure_and_verdict_has_every_claim(tmp_path):
    exp = get("reparam")
    cfg = R.ReparamConfig(**{**TINY, "structures": ("prompt",)})
    res = runner.run(exp, cfg, out=tmp_path, progress=False)
    assert len(res.results) == 2 * 2 * 2
    # run() is pure: recomputing a cell with its key gives the stored arrays bit for bit.
    cell, stored = res.results[-1]
    again = exp.run(cell, key=runner.cell_key(cell))
    assert set(again) >= {"voronoi", "param_error", "cell_size", "singleton_error", "merged_error", "l2_error"}
    assert again["param_error"].shape == (R.L_STAR,) and again["fit_p"].shape == (cell["L"], 2)
    for k in again:
        np.testing.assert_array_equal(again[k], stored[k])
    rows = res.rows
    assert rows and all(isinstance(r, VerdictRow) and isinstance(r.passed, bool) for r in rows)
    claims = [r.claim for r in rows]
    assert sum("merged-cell error ~ n^-1/4" in c for c in claims) == 1
    assert sum("L2" in c for c in claims) == 2 and len(claims) == 7
    # Resuming reuses every cell and gives the same verdict.
    resumed = runner.run(exp, cfg, out=tmp_path, progress=False)
    assert not resumed.computed and [r.as_dict() for r in resumed.rows] == [r.as_dict() for r in rows]


def test_verdict_rules_on_synthetic_results():
    # Errors that decay exactly like n^-1/2 (singleton) and n^-1/4 (merged), with the same
    # multiplicative scatter over replications at every n, pass; a flat merged error fails the
    # shared claim and passes the non-shared one.
    z = np.exp(0.3 * np.random.default_rng(0).standard_normal((12, 4)))
    ns = (1000, 10000, 100000)
    results = []
    for s in ("shared_linear", "nonshared"):
        for n in ns:
            for seed in range(12):
                e = z[seed]
                flat = s == "nonshared"
                results.append(({"structure": s, "L": 3, "n": n, "seed": seed}, {
                    "voronoi": np.asarray(e[0] * (1.0 if flat else n ** -0.5)),
                    "singleton_error": np.asarray(e[1] * n ** -0.5),
                    "merged_error": np.asarray(e[2] * (1.0 if flat else n ** -0.25)),
                    "kv_merged_error": np.asarray(e[2] * (1.0 if flat else n ** -0.25)),
                    "l2_error": np.asarray(e[3] * n ** -0.5),
                }))
    rows = {r.claim: r for r in R.verdict(R.ReparamConfig(), results)}
    assert len(rows) == 8 and any("smaller when shared" in c for c in rows)
    assert all(r.passed for r in rows.values()), [r for r in rows.values() if not r.passed]
    # Equal errors for both structures: no sample-efficiency advantage.
    same = [(c, {**a, "kv_merged_error": np.asarray(1.0)}) for c, a in results]
    assert not [r for r in R.verdict(R.ReparamConfig(), same) if "smaller when shared" in r.claim][0].passed
    # The same check with a deliberately wrong rate fails.
    ns_, y = R._table(results, "shared_linear", 3, "merged_error")
    assert not R._row("wrong", ns_, y, -0.5, stat="rms").passed
    assert not R._row("flat", *R._table(results, "nonshared", 3, "merged_error"), -0.25, stat="rms").passed
