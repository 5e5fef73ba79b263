"""sims experiment "reparam": cells, run and verdict at a tiny size (spec 5)."""

import json
import math

import numpy as np
import pytest

import sims.core as engine
from sims.core.experiment import STATUSES, VerdictRow
from sims.experiments import get
from sims.experiments import reparam as R
from sims.experiments import reparam_verdict as V

TINY = dict(structures=("prompt", "nonshared"), n_eff=(10_000, 1_000_000), n=60, replications=2, split_starts=1, random_starts=1,
            adam_steps=5, polish_steps=20, n_test=100)


def _rate(cells):
    return [c for c in cells if c["kind"] == "rate"]


def test_registered_and_cells():
    exp = get("reparam")
    assert exp.config is R.ReparamConfig
    cfg = R.ReparamConfig(**TINY)
    cells = _rate(exp.cells(cfg))
    assert len(cells) == 2 * 2 * 2 * 2  # structures x L x n_eff x replications
    for c in cells:
        assert all(isinstance(v, (int, float, str, bool)) for v in c.values())
        json.dumps(c)
        # noise traded for n: n_eff = n (sigma0 / sigma)^2
        assert c["n"] == 60 and math.isclose(c["n"] * (0.1 / c["noise"]) ** 2, c["n_eff"], rel_tol=1e-12)
    assert {c["L"] for c in cells} == {2, 3} and {c["seed"] for c in cells} == {0, 1}
    quick = R.ReparamConfig(quick=True)
    assert quick.grid() == R.QUICK_N_EFF and quick.reps() == 8 and quick.starts() == (2, 2) and quick.tol() == 1e-2
    full = R.ReparamConfig()
    assert full.grid()[0] == 10_000 and full.grid()[-1] == 100_000_000 and len(full.grid()) >= 5
    assert full.reps() >= 16 and full.tol() == 1e-2 and full.starts() == (3, 3) and full.steps() == 20000
    assert len(_rate(exp.cells(full))) == 4 * 2 * 5 * full.reps()
    assert exp.estimate_bytes(cells[0]) > 0
    # a real n grid, and the bound sensitivity cells (over-specified only)
    real = _rate(exp.cells(R.ReparamConfig(**{**TINY, "trade_noise": False})))
    assert all(c["n"] == c["n_eff"] and c["noise"] == 0.1 for c in real)
    alt = _rate(exp.cells(R.ReparamConfig(**{**TINY, "bound_alt": 10.0})))
    assert len(alt) == len(cells) + 2 * 2 * 2 and {c["L"] for c in alt if c["bound"] == 10.0} == {3}


def test_config_rejects_bad_values():
    for kw, match in ((dict(structures=("tied",)), "structures"), (dict(extra=(-1,)), "extra"),
                      (dict(noise=0.0), "noise"), (dict(noise=math.inf), "noise"), (dict(noise=math.nan), "noise"),
                      (dict(r=0.5), "r must"), (dict(n=5), "n must"), (dict(n_eff=(5,)), "n_eff"),
                      (dict(resolution=-1.0), "resolution"), (dict(resolution=0.0), "resolution"),
                      (dict(bound_alt=math.inf), "bound_alt"), (dict(basin_tol=0.0), "basin_tol"),
                      (dict(wide_jitter=-0.5), "wide_jitter"),
                      (dict(bound=math.inf), "bound")):
        with pytest.raises(ValueError, match=match):
            R.ReparamConfig(**kw)


def test_run_is_pure_and_verdict_has_every_claim(tmp_path):
    exp = get("reparam")
    cfg = R.ReparamConfig(**{**TINY, "structures": ("prompt",)})
    res = engine.run(exp, cfg, out=tmp_path)
    assert len(_rate([c for c, _ in res.results])) == 2 * 2 * 2
    # run() is pure: recomputing a cell with its key gives the stored arrays bit for bit.
    cell, stored = [(c, a) for c, a in res.results if c["kind"] == "rate"][-1]
    again = exp.run(cell, key=engine.cell_key(cell))
    assert set(again) >= {"voronoi", "param_error", "cell_size", "singleton_error", "merged_error", "merged_m2",
                          "extra_weight", "at_edge", "l2_error", "grad_norm", "iterations", "stop_ratio", "converged",
                          "start_losses", "start_gaps", "start_family", "n_best", "oracle_gap", "oracle_merged_m2"}
    # one split, one random and the oracle start; the estimate is the lowest truth-free loss
    assert list(again["start_family"]) == [0, 1, 2] and float(again["train_loss"]) == min(again["start_losses"][:2])
    assert 1 <= int(again["n_best"]) <= 2 and np.isfinite(float(again["oracle_gap"]))
    assert again["param_error"].shape == (R.L_STAR,) and again["fit_p"].shape == (cell["L"], 2)
    for k in again:
        np.testing.assert_array_equal(again[k], stored[k])
    rows = [r for r in res.rows if r.claim.startswith("prompt") or r.claim.startswith("control: prompt")]
    assert rows and all(isinstance(r, VerdictRow) and r.status in STATUSES for r in rows)
    claims = [r.claim for r in rows]
    assert sum("merged-cell error ~ n^-1/4" in c for c in claims) == 2  # the claim and its control
    assert sum(c.startswith("control:") for c in claims) == 3 + 5  # every rate row has its wrong-rate control
    assert sum("L2" in c for c in claims) == 4 and len(claims) == 2 * (3 + 5)
    assert all(r.detail for r in rows if r.status == "undecided")  # an undecided row says why
    # Resuming reuses every cell and gives the same verdict.
    resumed = engine.run(exp, cfg, out=tmp_path)
    assert not resumed.computed and [r.as_dict() for r in resumed.rows] == [r.as_dict() for r in res.rows]


def _synthetic(reps=12, scatter=0.3, agreed=1.0, oracle_lower=0.0):
    """Errors that decay exactly as predicted (shared) or stay flat (non-shared), same scatter at every n_eff."""
    z = np.exp(scatter * np.random.default_rng(0).standard_normal((reps, 5)))
    xs = (10_000, 100_000, 1_000_000, 10_000_000, 100_000_000)
    results = []
    for s in ("shared_linear", "nonshared"):
        flat = s == "nonshared"
        for x in xs:
            for seed in range(reps):
                e = z[seed]
                results.append(({"kind": "rate", "structure": s, "L": 3, "n": 1000, "n_eff": x, "seed": seed,
                                  "L_star": 2,
                                  "bound": 5.0}, {
                    "voronoi": np.asarray(e[0] * (1.0 if flat else x ** -0.5)),
                    "singleton_error": np.asarray(e[1] * x ** -0.5),
                    "merged_error": np.asarray(e[2] * (1.0 if flat else x ** -0.25)),
                    "merged_m2": np.asarray(e[2] ** 2 * (1.0 if flat else x ** -0.5)),
                    "kv_merged_error": np.asarray(e[2] * (1.0 if flat else x ** -0.25)),
                    "l2_error": np.asarray(e[3] * x ** -0.5),
                    "extra_weight": np.asarray(0.3), "at_edge": np.asarray(0.0), "grad_norm": np.asarray(1e-9),
                    "iterations": np.asarray(10), "converged": np.asarray(1.0),
                    "n_best": np.asarray(2 if seed < agreed * reps else 1),
                    "oracle_gap": np.asarray(0.5 if seed < oracle_lower * reps else 0.0),
                }))
    return results


def test_verdict_rules_on_synthetic_results():
    rows = {r.claim: r for r in R.verdict(R.ReparamConfig(), _synthetic())}
    assert len(rows) == 2 * 5 + 2 * 3 + 1 and any("smaller when shared" in c for c in rows)  # claims, controls
    assert all(r.status == "pass" for r in rows.values()), [r for r in rows.values() if r.status != "pass"]
    # Equal errors for both structures: no sample-efficiency advantage.
    same = [(c, {**a, "kv_merged_error": np.asarray(1.0 + 0.01 * c["seed"])}) for c, a in _synthetic()]
    eff = [r for r in R.verdict(R.ReparamConfig(), same) if "smaller when shared" in r.claim][0]
    assert eff.status != "pass"
    # A deliberately wrong rate fails the same test (the shared claim on flat data, and vice versa).
    xs, y = V.table(_synthetic(), "shared_linear", 3, "merged_error")
    assert V.slope_row("wrong", xs, y, -0.5, stat="rms").status == "fail"
    xs, y = V.table(_synthetic(), "nonshared", 3, "merged_error")
    assert V.slope_row("flat", xs, y, -0.25, stat="rms").status == "fail"
    assert V.slope_row("flat", xs, y, -0.25, stat="rms", kind="above").status == "pass"


def test_undecided_rows_say_why_and_what_would_decide():
    # Heavy scatter over 3 replications: the interval is too wide, so the claim is undecided with a
    # replication count and an n_eff range that would decide it -- not a pass, not a failure.
    noisy = [(c, a) for c, a in _synthetic(reps=3, scatter=2.0)]
    rows = {r.claim: r for r in R.verdict(R.ReparamConfig(), noisy)}
    row = rows["shared_linear L=3 (over-specified): merged-cell error ~ n^-1/4"]
    assert row.status == "undecided" and not row.passed and not row.failed
    assert "replications" in row.detail and row.n_needed and row.n_needed > 3
    # Fits whose best loss only one start reached, or that the start near the truth beat, make every
    # row undecided, whatever the slope; 1 in 12 (above 90%) does not.
    for bad in (dict(agreed=0.5), dict(oracle_lower=0.25)):
        rows = {r.claim: r for r in R.verdict(R.ReparamConfig(), _synthetic(**bad))}
        for claim in ("shared_linear L=3 (over-specified): merged-cell error ~ n^-1/4",
                      "shared_linear L=3 (over-specified): ||f_hat - f*||_L2 ~ n^-1/2"):
            assert rows[claim].status == "undecided" and "two starts" in rows[claim].detail, bad
    rows = {r.claim: r for r in R.verdict(R.ReparamConfig(), _synthetic(agreed=11 / 12, oracle_lower=1 / 12))}
    assert all(r.status == "pass" for r in rows.values())


def test_decide_rules():
    # The shared rules: equivalence band p +- SLOPE_TOL (0.1) for a rate, one-sided for a flattening.
    s = lambda m, lo, hi: V.Slope(m, lo, hi, np.array([1e4, 1e8]), np.array([1.0, 0.1]), 16)  # noqa: E731
    assert V.decide(s(-0.26, -0.3, -0.2), -0.25, "equals")[0] == "pass"
    assert V.decide(s(-0.45, -0.5, -0.4), -0.25, "equals")[0] == "fail"
    assert V.decide(s(-0.32, -0.37, -0.31), -0.25, "equals")[0] == "undecided"  # straddles -1/4 - 0.1
    assert V.decide(s(-0.47, -0.49, -0.45), -0.5, "equals", tol=0.0)[0] == "fail"
    assert V.decide(s(-0.48, -0.50, -0.46), -0.5, "equals", tol=0.0)[0] == "undecided"
    status, margin = V.decide(s(-0.2, -0.5, 0.1), -0.25, "equals")
    assert status == "undecided" and abs(margin - 0.05) < 1e-12
    assert V.decide(s(-0.1, -0.2, 0.0), -0.25, "above")[0] == "pass"
    assert V.decide(s(-0.4, -0.5, -0.3), -0.25, "above")[0] == "fail"
    assert V.decide(s(-0.2, -0.4, 0.0), -0.25, "above")[0] == "undecided"
    with pytest.raises(ValueError):
        V.decide(s(0, 0, 0), -0.25, "below")


def test_figure_legend_slopes_are_the_verdicts_numbers():
    import matplotlib

    matplotlib.use("Agg")
    from figures import data, reparam as F, style

    results = _synthetic()
    verdict = R.verdict(R.ReparamConfig(), results)
    run = data.Run("reparam", "synthetic", None, {"config": {"bound": 5.0},
                                                  "verdict": [r.as_dict() for r in verdict]}, results)
    with style.context():
        fig = F.plot(run)
    labels = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    rows = {r.claim: r for r in verdict}
    for claim in ("merged-cell error ~ n^-1/4", "merged-cell sum w||Delta||^2 ~ n^-1/2"):
        for s, short in (("shared_linear", "shared lin."), ("nonshared", "non-shared")):
            claim_s = claim if s == "shared_linear" else claim.replace("~", "flatter than")
            row = rows[f"{s} L=3 (over-specified): {claim_s}"]
            assert f"{short}: {style.verdict_label(row)}" in labels, (labels, row.measured)
    # Without stored rows the figure draws the data and says so; it fits nothing of its own.
    with style.context():
        bare = F.plot(data.Run("reparam", "synthetic", None, {"config": {"bound": 5.0}}, results))
    bare_labels = [t.get_text() for ax in bare.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert "shared lin.: no verdict row" in bare_labels and not any("slope" in t for t in bare_labels)
    for ax in fig.axes[:3]:  # every panel has at least two labelled y ticks
        lo, hi = ax.get_ylim()
        assert len([t for t in ax.get_yticks() if lo <= t <= hi]) >= 2, ax.get_title()
