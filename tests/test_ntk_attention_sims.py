"""The NTK-Attention experiments at tiny sizes: contract, and the verdict rows that must pass."""

import dataclasses

import jax
import numpy as np
import pytest

from sims.core.experiment import VerdictRow

from sims.experiments import get


def _run(name, cfg):
    exp = get(name)
    cells = exp.cells(cfg)
    assert cells and all("seed" in c for c in cells)
    for c in cells:  # flat dicts of JSON scalars
        assert all(isinstance(v, (int, float, str, bool)) for v in c.values())
    results = [(c, exp.run(dict(c, dtype="float64"), key=jax.random.key(i))) for i, c in enumerate(cells)]
    for _, arrays in results:
        assert all(isinstance(v, np.ndarray) for v in arrays.values())
    rows = exp.verdict(cfg, results)
    assert rows and all(isinstance(r, VerdictRow) for r in rows)
    return exp, cells, results, {r.claim: r for r in rows}


def test_registered_with_paper_scale_defaults():
    for name in ("ntk-attention-error", "ntk-attention-train", "ntk-attention-cost"):
        exp = get(name)
        cfg = exp.config()
        assert all(f.metadata.get("help") for f in dataclasses.fields(cfg))
    train = get("ntk-attention-train").config()
    assert (train.d, train.L, train.lr, train.steps) == (64, 128, 1e-3, 40_000)
    assert train.m == tuple(2**i for i in range(1, 19))
    assert len(get("ntk-attention-train").cells(train)) == 36


def test_error_experiment():
    exp = get("ntk-attention-error")
    cfg = exp.config(m=(16,), beta=(1.0,), L=4, g_max=2, seeds=1)
    _, cells, results, rows = _run("ntk-attention-error", cfg)
    assert len(cells) == 2
    for claim, row in rows.items():
        if "decreases in g" in claim:  # 3 degrees x 2 cells: the slope's interval may still reach 0
            assert row.status in ("pass", "undecided") and row.estimate < 0, row
        else:  # every bound, tightness and degree row holds, the negative control included
            assert row.passed, row
    by = {r.id: r for r in rows.values()}
    assert by["c1"].is_control and by["c1"].controls == ("1",) and by["1"].controls == ("c1",)
    assert all(r.tol_why for r in rows.values() if r.relation)
    assert any("without the e^beta factor" in c for c in rows)
    again = exp.run(dict(cells[0], dtype="float64"), key=jax.random.key(0))
    np.testing.assert_array_equal(again["err"], results[0][1]["err"])  # deterministic given (cell, key)
    with pytest.raises(ValueError, match="pattern"):
        exp.config(pattern=("bogus",))


def test_train_experiment():
    cfg = get("ntk-attention-train").config(m=(4,), feature=("elu",), d=4, L=6, steps=60, val_size=16, lr=3e-2)
    _, cells, results, rows = _run("ntk-attention-train", cfg)
    arrays = results[0][1]
    assert arrays["losses"].shape == (60,)
    assert float(arrays["public_loss_zero"]) < 1e-25  # the public objective's optimum is Z = k = 0
    for claim, row in rows.items():
        assert row.passed, row


def test_cost_experiment():
    cfg = get("ntk-attention-cost").config(m=(16, 1024), feature=("elu",), d=4, L=8, repeats=1)
    _, cells, results, rows = _run("ntk-attention-cost", cfg)
    for claim, row in rows.items():
        if "time crossover" not in claim:  # timings are measurements, never asserted
            assert row.passed, row
    assert float(results[0][1]["state_bytes_ntk"]) == float(results[1][1]["state_bytes_ntk"])
