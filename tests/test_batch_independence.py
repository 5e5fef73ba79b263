"""A cell's values do not depend on its batch (issue 22): alone, in a smaller batch, or in a resumed
run, a cell gets the same bits.

The experiments that batch (``run_batch``) compute each cell of a batch by its own call to one
compiled program; the others are never batched by the planner.  The negative control shows that
the check has power: the previous path (``jax.vmap`` over the batch's keys) gives other bits for
the same cell in a batch of 3 and alone.
"""

from __future__ import annotations

import dataclasses
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sims_toy  # noqa: F401  (registers "toy")
from compare_results import cell_bits
import theory as T
from sims.core import planning as planner
import sims.core as runner
from sims.core import cellfile, store
from sims.experiments import convergence, get, load_all

TINY_CONVERGENCE = dict(m=(64, 256), n=4, d=4, steps=4, log_every=2, seeds=3)


@pytest.mark.parametrize("exp", load_all(), ids=lambda e: e.name)
def test_planner_batches_only_experiments_that_batch(exp):
    """An experiment without ``run_batch`` is computed one cell per call, whatever its sweep."""
    if exp.run_batch is not None:
        pytest.skip("batches: covered by the bit comparisons below")
    p = planner.plan(exp, exp.config(), out="/nonexistent-out", memory=(None, "test"))
    assert p.batches and all(len(b) == 1 for b in p.batches)


def test_convergence_cell_same_bits_alone_in_batch_and_resumed(tmp_path):
    """The issue's case: cells deleted and recomputed in a batch of 2 instead of 3, and alone."""
    exp = get("convergence")
    cfg = exp.config(**TINY_CONVERGENCE)
    full = runner.run(exp, cfg, out=tmp_path / "full")
    assert max(len(b) for b in full.plan.batches) == 3
    ref = cell_bits(tmp_path / "full", "convergence")
    # A resumed run: one cell of each group deleted, the other two recomputed in a batch of 2.
    resumed = tmp_path / "resumed"
    (resumed / "convergence").mkdir(parents=True)
    shutil.copytree(store.cells_dir(tmp_path / "full", "convergence"), store.cells_dir(resumed, "convergence"))
    for pc in full.plan.cells:
        if pc.cell["seed"] != 0:
            store.cell_path(resumed, "convergence", pc.cell_id).unlink()
    again = runner.run(exp, cfg, out=resumed)
    assert {len(b) for b in again.plan.batches} == {2}
    assert cell_bits(resumed, "convergence") == ref
    # Every cell alone (one call each, in reverse order).
    alone = tmp_path / "alone"
    for pc in reversed(full.plan.cells):
        c = {k: v for k, v in pc.cell.items() if k != "dtype"}
        outs = exp.run_batch([pc.cell], keys=planner.cell_key(c)[None])
        cellfile.write_cell(store.cell_path(alone, "convergence", pc.cell_id), outs[0], {"cell_id": pc.cell_id})
    assert cell_bits(alone, "convergence") == ref
    assert again.rows == full.rows


def test_vmapped_batch_changes_bits_negative_control():
    """The previous path, one ``vmap`` over the batch's keys, gives a cell other bits in a batch of
    3 than alone: the comparison above can fail."""
    exp = get("convergence")
    p = planner.plan(exp, exp.config(**TINY_CONVERGENCE), out="/nonexistent-out", force=True)
    differs = []
    for batch in p.batches:
        cells = [p.cells[i].cell for i in batch]
        c = cells[0]
        U, y, V, _, _, eta = convergence.problem(c)
        m = int(c["m"])
        eta_run = c["control_lr"] * eta * m if c["parametrization"] == "mean-field" else eta
        static = dict(model=T.get_model(c["model"]), m=m, d=c["d"], k=c["k"], steps=c["steps"],
                      log_every=c["log_every"], parametrization=c["parametrization"])
        args = (U, y, V, jnp.asarray(eta_run, U.dtype), jnp.asarray(c["sigma"], U.dtype))
        keys = jnp.stack([planner.cell_key(x) for x in cells])
        vmapped = jax.jit(jax.vmap(lambda k: convergence.train_cell(k, *args, **static)))
        whole, last = vmapped(keys), vmapped(keys[-1:])
        per_cell = convergence._train(keys[-1], *args, **static)
        differs.append(any(not np.array_equal(whole[k][-1], last[k][0]) for k in whole))
        # the per-cell program gives the same bits as the batch's own run_batch
        got = exp.run_batch(cells, keys=keys)[-1]
        assert np.array_equal(got["kernel_change"], np.asarray(per_cell["kernel_change"]))
    assert any(differs)


def test_toy_cell_same_bits_in_any_batch(tmp_path, monkeypatch):
    exp = get("toy")
    a = runner.run(exp, exp.config(x=(0.0, 1.0), seeds=3), out=tmp_path / "a")
    assert max(len(b) for b in a.plan.batches) == 3
    monkeypatch.setitem(sims_toy.REGISTRY, "toy", dataclasses.replace(exp, run_batch=None, batch_key=None))
    runner.run(get("toy"), exp.config(x=(1.0, 0.0), seeds=3), out=tmp_path / "b")
    assert cell_bits(tmp_path / "a", "toy") == cell_bits(tmp_path / "b", "toy")
