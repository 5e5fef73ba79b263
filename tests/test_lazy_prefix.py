"""`sims run lazy-prefix` at tiny size: cells, results, verdict rows (slopes, thresholds, the
standard-scaling control, undecided), resumability, and the verdict logic on synthetic data."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import sims.core as engine
from sims.experiments import get
from sims.experiments import lazy_prefix as LP
from sims.experiments import lazy_prefix_regime as RG
from sims.experiments import lazy_prefix_verdict as LV

TINY = dict(quick=True, m=(2, 4, 8), seeds=2, p=3, T=4, d=8, layers=1, heads=2, d_mlp=8, n=4, n_test=8, steps=4,
            log_every=2, pretrain_steps=20)


@functools.lru_cache(maxsize=None)
def tiny_run(tmp_root):
    cfg = LP.LazyPrefixConfig(**TINY)
    return cfg, engine.run(get("lazy-prefix"), cfg, out=tmp_root, precision="float64")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_run(str(tmp_path_factory.mktemp("lazy")))


def test_cells_layout():
    cfg = LP.LazyPrefixConfig(**TINY)
    cells = LP.cells(cfg)
    assert cells[0]["role"] == "base" and sum(c["role"] == "base" for c in cells) == 1
    assert len(cells) == 1 + len(LP.ARMS) * 3 * 2
    assert {c["arm"] for c in cells[1:]} == set(LP.ARMS)
    assert LP.LazyPrefixConfig().grid() == list(LP.FULL_M)
    assert LP.LazyPrefixConfig(quick=True).grid() == list(LP.QUICK_M)
    with pytest.raises(ValueError, match="log_every"):
        LP.LazyPrefixConfig(steps=10, log_every=3)
    with pytest.raises(ValueError, match="heads"):
        LP.LazyPrefixConfig(d=10, heads=4)


@pytest.mark.slow  # minutes of compilation (37 cells); the notebook test runs the experiment by default
def test_tiny_run_has_every_result_and_a_verdict(tiny):
    cfg, result = tiny
    from figures import data

    run = data.load_run(result.manifest_path.parents[2], "lazy-prefix")  # read back from disk
    base = [a for c, a in run.results if c["role"] == "base"]
    assert len(base) == 1 and base[0]["base_params"].size > 0 and base[0]["pretrain_loss"].shape == (20,)
    tune = [(c, a) for c, a in run.results if c["role"] == "tune"]
    assert len(tune) == len(LP.ARMS) * 3 * 2
    for c, a in tune:
        assert a["loss"].shape == (5,) and a["kernel_change_curve"].shape == (3,)
        assert a["kernel_change_curve"][0] == 0.0 and a["param_change_curve"][0] == 0.0
        assert np.all(np.isfinite(a["lin_gap"])) and 0 <= float(a["test_accuracy"]) <= 1
        assert float(a["n_direct_prefix_params"]) == 2 * c["layers"] * c["m"] * c["d"]
        if c["arm"] in ("ntk-gd", "standard-gd", "standard-adam"):
            assert float(a["n_params"]) == float(a["n_direct_prefix_params"])
        if c["arm"] == "lora-adam":  # matched count: rank m/2 (m = 2 -> r = 1, m = 8 -> r = 4)
            assert float(a["n_params"]) == float(a["n_direct_prefix_params"])
        assert np.isfinite(float(a["prefix_logit_spread"]))
    claims = [r.claim for r in result.rows]
    assert any(c.startswith("ntk-gd: kernel movement per unit of output change") for c in claims)
    assert any(c.startswith("control standard-gd") for c in claims)
    assert any("linearised prediction within 10%" in c for c in claims)
    assert any(c.startswith("paper 1: NTK-Attention") and "LoRA" in c for c in claims)
    assert any(c.startswith("paper 2: the reparameterised prefix") for c in claims)
    assert all("base: pretrained" in r.detail for r in result.rows)
    assert len(result.computed) == 1 + len(tune) and not result.reused


@pytest.mark.slow
def test_rerun_resumes_and_reproduces(tiny, tmp_path):
    cfg, first = tiny
    out = first.manifest_path.parents[2]
    again = engine.run(get("lazy-prefix"), cfg, out=out, precision="float64")
    assert [r.as_dict() for r in again.rows] == [r.as_dict() for r in first.rows]
    assert not again.computed and len(again.reused) == len(first.computed)


def _fake(arm, ms, slope, seeds=3, lin=0.05, noise=0.02, share=None, d=8):
    """Synthetic tuning cells: movements ``m**slope`` (or ``slope(m)`` when it is callable) at unit
    output change and unit displacement; ``share`` maps m to the prefix attention share (1 by default)."""
    rng = np.random.default_rng(0)
    out = []
    for m in ms:
        level = slope(m) if callable(slope) else m**slope
        for s in range(seeds):
            v = level * np.exp(noise * rng.standard_normal())
            rows = 2 * m  # one layer: m key and m value rows
            out.append(({"role": "tune", "arm": arm, "m": m, "seed": s, "d": d},
                        {"kernel_change": v, "param_change": v, "lin_gap": lin * v,
                         "output_change": 1.0, "test_accuracy": 0.9, "n_direct_prefix_params": rows * d,
                         "rms_row_movement": 1.0 / np.sqrt(rows),
                         "prefix_attention_share": 1.0 if share is None else share[m] + 0.01 * (s - 1)}))
    return out


def _rows(cfg, results):
    return {r.claim: r for r in LV.verdict(cfg, results)}


def _one(rows, start):
    found = [r for c, r in rows.items() if c.startswith(start)]
    assert len(found) == 1, (start, list(rows))
    return found[0]


KERNEL = "ntk-gd: kernel movement per unit of output change ~ m^-1/2, long-prefix regime"
KERNEL_ALL = "ntk-gd: kernel movement per unit of output change ~ m^-1/2 over all m"
GD = LP.LazyPrefixConfig(quick=True, arms=("ntk-gd", "standard-gd"))


def test_regime_is_the_mean_share_over_seeds_at_least_one_half():
    ms = [1, 4, 16, 64]
    res = _fake("ntk-gd", ms, -0.5, share={1: 0.1, 4: 0.3, 16: 0.5, 64: 0.9})  # seeds at share -0.01, 0, +0.01
    got, by_m = RG.tuning(res, "ntk-gd")
    assert got == ms and RG.regime_ms(ms, by_m) == [16, 64]  # the mean 0.5 is in; a seed below it does not matter
    assert RG.shares(by_m)[4] == pytest.approx(0.3)
    c, a = by_m[4][0]
    assert RG.displacement(c, a) == pytest.approx(1.0)
    slopes = RG.local_slopes(ms, by_m, RG.MATCHED[0])
    assert [(lo, hi) for lo, hi, _ in slopes] == [(1, 4), (4, 16), (16, 64)]
    assert all(abs(f.slope + 0.5) < 0.05 for _, _, f in slopes)


def test_verdict_passes_the_lazy_rate_and_catches_the_control():
    ms = [4, 16, 64, 256]
    rows = _rows(GD, _fake("ntk-gd", ms, -0.5) + _fake("standard-gd", ms, 0.0))
    assert _one(rows, KERNEL).passed and "(m = 4, 16, 64, 256)" in _one(rows, KERNEL).claim
    assert _one(rows, "ntk-gd: kernel movement per unit of parameter displacement").passed
    assert not any(c.startswith(KERNEL_ALL) for c in rows)  # every m in the regime: one fit, not two
    arm = [r for c, r in rows.items() if c.startswith("control standard-gd")]
    assert len(arm) == 2 and all(r.passed for r in arm)  # flat movement is not m^-1/2: caught
    wrong = [r for c, r in rows.items() if c.startswith("control: ntk-gd")]
    assert len(wrong) == 2 * len(RG.MATCHED) and all(r.passed and r.is_control for r in wrong)  # both exponents
    # a control that does decay like m^-1/2 fails its row, and a wrong rate fails the claim
    rows = _rows(GD, _fake("ntk-gd", ms, -1.0) + _fake("standard-gd", ms, -0.5))
    assert _one(rows, KERNEL).failed
    assert all(r.failed for c, r in rows.items() if c.startswith("control standard-gd"))
    # the claim's data at the wrong exponent -1: that control is not caught, the one at 0 still is
    assert all(r.failed for r in rows.values() if r.id.endswith("-c1")) and \
        all(r.passed for r in rows.values() if r.id.endswith("-c0"))


def test_wrong_exponent_controls_judge_the_claims_own_fit_and_link_both_ways():
    ms = [4, 16, 64, 256]
    rows = {r.id: r for r in LV.verdict(GD, _fake("ntk-gd", ms, -0.5) + _fake("standard-gd", ms, 0.0))}
    claim = rows["ntk-gd-kernel_change"]
    assert claim.controls == ("ntk-gd-kernel_change-c0", "ntk-gd-kernel_change-c1", "standard-gd-kernel_change")
    for suffix, wrong in (("c0", 0.0), ("c1", -1.0)):
        ctl = rows[f"ntk-gd-kernel_change-{suffix}"]
        assert ctl.is_control and ctl.controls == ("ntk-gd-kernel_change",) and ctl.target == wrong
        assert (ctl.estimate, ctl.low, ctl.high, ctl.cells) == (claim.estimate, claim.low, claim.high, claim.cells)
    assert rows["standard-gd-kernel_change"].controls == ("ntk-gd-kernel_change",)
    # data half-way between the claim and a wrong exponent, with few seeds: the control is undecided
    noisy = {r.id: r for r in LV.verdict(GD, _fake("ntk-gd", [64, 128, 256], -0.8, seeds=2, noise=0.3))}
    assert noisy["ntk-gd-kernel_change-c1"].status == "undecided"
    # fewer than two in-regime m: the controls are undecided with the claim, never caught
    few = {r.id: r for r in LV.verdict(GD, _fake("ntk-gd", ms, -0.5, share={4: 0.2, 16: 0.3, 64: 0.4, 256: 0.6}))}
    assert all(few[f"ntk-gd-lin_gap-{s}"].status == "undecided" for s in ("c0", "c1"))


def test_rate_is_judged_on_the_in_regime_cells_not_the_all_m_fit():
    ms = [1, 4, 16, 64, 256, 1024]
    share = {1: 0.05, 4: 0.15, 16: 0.35, 64: 0.6, 256: 0.8, 1024: 0.9}
    # flat below the regime, m^-0.8 inside it: the all-m OLS slope lands near -1/2, the in-regime one at -0.8
    res = _fake("ntk-gd", ms, lambda m: min(1.0, (m / 16) ** -0.8), share=share)
    x, y = RG.points(ms, RG.tuning(res, "ntk-gd")[1], RG.MATCHED[0])
    assert abs(np.polyfit(np.log(x), np.log(y), 1)[0] + 0.5) < 0.05  # the all-m fit would pass
    rows = _rows(GD, res)
    row = _one(rows, KERNEL)
    assert row.failed and "(m = 64, 256, 1024)" in row.claim
    beside = _one(rows, KERNEL_ALL)
    assert beside.status == "undecided" and "m = 1, 4, 16 outside the long-prefix regime" in beside.claim
    assert "does not judge the claim" in beside.detail
    # the other way round: flat outside the regime, m^-1/2 inside: the claim passes on its cells
    res = _fake("ntk-gd", ms, lambda m: min(1.0, (m / 16) ** -0.5), share=share)
    x, y = RG.points(ms, RG.tuning(res, "ntk-gd")[1], RG.MATCHED[0])
    assert np.polyfit(np.log(x), np.log(y), 1)[0] > -0.35  # the all-m fit would fail
    rows = _rows(GD, res)
    assert _one(rows, KERNEL).passed and _one(rows, KERNEL_ALL).status == "undecided"


def test_rate_undecided_with_too_few_in_regime_m_or_too_few_seeds():
    ms = [4, 16, 64, 256]
    rows = _rows(GD, _fake("ntk-gd", ms, -0.5, share={4: 0.2, 16: 0.3, 64: 0.4, 256: 0.6}))
    row = _one(rows, KERNEL)
    assert row.status == "undecided" and "1 of 4 m in the regime" in row.measured and row.n_needed is None
    assert "at least 3 in-regime m" in row.detail
    rows = _rows(GD, _fake("ntk-gd", ms, -0.5, seeds=2, noise=0.6))
    row = _one(rows, KERNEL)
    assert row.status == "undecided" and "seeds per point would decide it" in row.detail and row.n_needed > 2


def test_two_in_regime_m_show_a_slope_but_do_not_judge_it():
    # m^-1 inside the regime: on three in-regime m the claim fails (the negative control) ...
    share = {4: 0.2, 16: 0.3, 64: 0.6, 256: 0.8, 1024: 0.9}
    three = _one(_rows(GD, _fake("ntk-gd", [4, 16, 64, 256, 1024], -1.0, share=share)), KERNEL)
    assert three.failed and "(m = 64, 256, 1024)" in three.claim
    # ... on two it is undecided, with the slope over them shown and the reason
    rows = _rows(GD, _fake("ntk-gd", [4, 16, 64, 256], -1.0, share=share))
    two = _one(rows, KERNEL)
    assert two.status == "undecided" and not two.failed and two.n_needed is None
    assert abs(two.estimate + 1.0) < 0.05 and "only 2 in-regime m (64, 256)" in two.detail
    assert "fail on its own" in two.detail
    assert all(r.status == "undecided" for c, r in rows.items() if c.startswith("control: ntk-gd"))


def test_threshold_row_holds_fails_and_undecided():
    ms = [4, 16, 64]
    row = LV.threshold_row("x", ms, {m: [{"g": v} for v in vals] for m, vals in
                                     zip(ms, [[0.5, 0.6], [0.2, 0.21], [0.01, 0.02]])}, "g")
    assert row.passed and "holds from m = 64" in row.measured
    row = LV.threshold_row("x", ms, {m: [{"g": 0.5}, {"g": 0.52}] for m in ms}, "g")
    assert not row.passed and "not reached up to m = 64" in row.measured
    row = LV.threshold_row("x", ms, {m: [{"g": 0.01}, {"g": 0.3}] for m in ms}, "g")
    assert row.status == "undecided" and not row.failed and "straddles" in row.measured


def test_difference_row_pass_fail_undecided_and_the_n_it_needs():
    from sims.core.verdicts import difference_row
    from theory.stats import welch_ci

    diff, lo, hi = welch_ci([0.5, 0.52, 0.51], [0.3, 0.31, 0.29])
    assert lo < diff < hi and abs(diff - 0.21) < 1e-12
    q = "accuracy difference"
    assert difference_row("c", "c", [0.5, 0.52, 0.51], [0.3, 0.31, 0.29], at_least=-0.05, quantity=q).passed
    assert difference_row("c", "c", [0.2, 0.21, 0.22], [0.5, 0.51, 0.49], at_least=-0.05, quantity=q).failed
    row = difference_row("c", "c", [0.2, 0.5, 0.35], [0.3, 0.4, 0.35], at_least=0.0, strict=True, quantity=q)
    assert row.status == "undecided" and "sits on the threshold" in row.detail and row.n_needed is None  # diff 0
    row = difference_row("c", "c", [0.30, 0.45, 0.40], [0.30, 0.32, 0.31], at_least=0.0, strict=True, quantity=q)
    assert row.status == "undecided" and "samples per side would decide it" in row.detail and row.n_needed > 3


def test_paper_rows_judge_ntk_attention_and_reparam_on_synthetic_accuracies():
    ms = [4, 16, 64]

    def acc(arm, value):
        return [({"role": "tune", "arm": arm, "m": m, "seed": s},
                 {"test_accuracy": value + 0.003 * s, "kernel_change": 0.1, "param_change": 0.1, "lin_gap": 0.01,
                  "output_change": 1.0}) for m in ms for s in range(3)]

    cfg = LP.LazyPrefixConfig(quick=True, arms=("standard-adam", "reparam-adam", "lora-adam", "ntk-attention-adam"))
    res = acc("standard-adam", 0.40) + acc("reparam-adam", 0.50) + acc("lora-adam", 0.60) + \
        acc("ntk-attention-adam", 0.38)
    by = {r.claim.split(": ")[1]: r for r in LV.verdict(cfg, res) if r.claim.startswith("paper")}
    assert by["NTK-Attention (trained summary) competitive with P-Tuning v2 (prefix, Adam)"].passed  # -0.02
    assert by["NTK-Attention competitive with LoRA of matched parameter count"].failed  # -0.22
    assert by["the reparameterised prefix beats the direct one (Adam)"].passed  # +0.10
