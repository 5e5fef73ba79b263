"""``sims run --devices``: experiments that split each cell's prefix rows over several devices
give the single-device numbers, hold a share of the rows per device, and reuse stored cells
whatever the device count; bad requests exit 2 before any work.

The device count is fixed before JAX starts, so the two-device checks run in one subprocess
with ``XLA_FLAGS=--xla_force_host_platform_device_count=2`` that prints JSON; the tests below
assert on it.  The one-device checks run in this process.
"""

import textwrap

import pytest

from cli_runner import invoke
from multidevice import run_on_devices

SCRIPT = textwrap.dedent(r"""
    import json, sys, tempfile
    import jax, jax.numpy as jnp
    import numpy as np
    jax.config.update("jax_enable_x64", True)
    sys.path.insert(0, "tests")
    from cli_runner import invoke
    import sims.core as engine
    from sims.core import cellfile, store
    from sims.experiments import get
    from sims.experiments import convergence as C, kernel as K
    from theory.scaling.sharding import device_mesh

    mesh = device_mesh()
    out = {"devices": jax.device_count(), "convergence": {}, "kernel": {}, "memory": {}, "cli": {}}

    def worst(r1, r2):
        # Largest relative difference over every float result of every cell (and the names compared).
        err, names = 0.0, set()
        for a, b in zip(r1, r2):
            for key in a:
                x, y = np.asarray(a[key]), np.asarray(b[key])
                if x.dtype.kind == "f":
                    names.add(key)
                    err = max(err, float(np.max(np.abs(x - y)) / max(float(np.max(np.abs(x))), 1e-300)))
        return err, sorted(names)

    # m = 1001: odd, so XLA pads one device's block and the sharded reductions merge a tail row.
    base = dict(n=6, d=5, sigma=1.0, input_norm=1.0, eta=0.0, steps=20, log_every=10, data_seed=0,
                control_lr=0.01, parametrization="ntk", dtype="float64", m=1001)
    keys = jax.random.split(jax.random.key(3), 2)
    for name, k in (("exp-sign", 1), ("softmax-sign", 2), ("prefix", 2)):
        cells = [{**base, "model": name, "k": k, "seed": s} for s in (0, 1)]
        one = C.run_batch(cells, keys=keys)
        two = C.run_batch(cells, keys=keys, mesh=mesh)
        out["convergence"][name] = worst(one, two)
        kcell = {"model": name, "m": 1001, "n": 6, "d": 5, "k": k, "sigma": 0.7, "input_norm": 0.5,
                 "data_seed": 0, "seed": 0, "dtype": "float64"}
        out["kernel"][name] = worst([K.run(kcell, key=keys[0])], [K.run(kcell, key=keys[0], mesh=mesh)])

    # Per-device memory of the compiled training program (compiled only, never run).
    cell = {**base, "model": "prefix", "k": 1, "m": 100_000, "steps": 20, "log_every": 10, "seed": 0}
    U, y, V, H_star, lam, eta = C.problem(cell)
    for tag, msh in (("one", None), ("two", mesh)):
        compiled = C._train.lower(keys[0], U, y, V, jnp.asarray(eta), jnp.asarray(1.0), model=C.DEFAULT_MODEL,
                                  m=cell["m"], d=5, k=1, steps=20, log_every=10, parametrization="ntk",
                                  mesh=msh).compile()
        out["memory"][tag] = int(compiled.memory_analysis().temp_size_in_bytes)
    out["memory"]["estimate"] = [C.estimate_bytes(cell, devices=D) for D in (1, 2)]

    # The CLI end to end: two devices, then one, on the same results folder.
    tmp = tempfile.mkdtemp()
    args = ["run", "convergence", "--model", "softmax-sign", "--m", "800", "--ladder", "2", "--seeds", "2",
            "--steps", "20", "--log-every", "10", "--no-control", "--quiet", "--out", tmp]
    r = invoke(*args, "--devices", "2")
    metas = [cellfile.read_cell(p)[1] for p in sorted(store.cells_dir(tmp, "convergence").glob("*.npz"))]
    out["cli"]["two"] = [r.exit_code, [m["provenance"]["device"]["used"] for m in metas]]
    res = engine.run(get("convergence"), C.ConvergenceConfig(model="softmax-sign", m=(800,), ladder=2, seeds=2,
                     steps=20, log_every=10, control=False), out=tmp, devices=1)
    out["cli"]["rerun_one_device"] = [len(res.computed), len(res.reused)]
    r = invoke(*args, "--devices", "3", "--force")
    out["cli"]["three"] = [r.exit_code, r.output]
    r = invoke("run", "ntk-attention-error", "--devices", "2", "--out", tmp, "--dry-run")
    out["cli"]["not_shardable"] = [r.exit_code, r.output]
    r = invoke(*args[:2], "--dry-run", "--out", tmp + "/fresh")
    out["cli"]["dry_run"] = [r.exit_code, r.output]
    print("RESULT " + json.dumps(out))
""")


@pytest.fixture(scope="module")
def two_devices():
    return run_on_devices(SCRIPT, 2)


def test_two_devices_were_used(two_devices):
    assert two_devices["devices"] == 2


@pytest.mark.parametrize("name", ["exp-sign", "softmax-sign", "prefix"])
def test_sharded_training_equals_single_device(two_devices, name):
    err, names = two_devices["convergence"][name]
    assert {"loss", "H0_err", "lambda_min_H0", "kernel_change", "movement", "movement_rms", "lin_dist"} <= set(names)
    assert err < 1e-10, (name, err)


@pytest.mark.parametrize("name", ["exp-sign", "softmax-sign", "prefix"])
def test_sharded_kernel_experiment_equals_single_device(two_devices, name):
    err, names = two_devices["kernel"][name]
    assert {"err", "err_wrong", "lambda_min_H0"} <= set(names)
    assert err < 1e-10, (name, err)


def test_each_device_holds_about_half_the_training_memory(two_devices):
    mem = two_devices["memory"]
    # Measured 0.56 with 2 CPU devices at m = 1e5; all rows on every device would give about 1.
    assert mem["two"] < 0.7 * mem["one"], mem
    one, two = mem["estimate"]
    assert two < one and mem["two"] <= two and mem["one"] <= one, mem  # the per-device estimate bounds XLA's


def test_cli_records_devices_and_cells_are_shared_across_counts(two_devices):
    cli = two_devices["cli"]
    code, used = cli["two"]
    assert code in (0, 1) and used == [2, 2, 2, 2], cli["two"]  # a claim may fail at this tiny size
    assert cli["rerun_one_device"] == [0, 4]  # same cell ids: nothing recomputed on one device


def test_cli_refuses_more_devices_than_visible(two_devices):
    code, output = two_devices["cli"]["three"]
    assert code == 2 and "--devices 3 but only 2 local device(s)" in output, output


def test_cli_refuses_devices_for_an_experiment_that_does_not_shard(two_devices):
    code, output = two_devices["cli"]["not_shardable"]
    assert code == 2 and "ntk-attention-error does not split its rows over devices" in output, output


def test_dry_run_shows_all_devices_by_default(two_devices):
    code, output = two_devices["cli"]["dry_run"]
    assert code == 0 and "2 device(s)" in output and "per device" in output, output


# ----------------------------------------------------------------------------- this process (1 device)


@pytest.mark.parametrize("value, message", [("0", "--devices must be an integer >= 1, got 0"),
                                            ("1.5", "--devices must be an integer >= 1, got 1.5"),
                                            ("2", "--devices 2 but only 1 local device(s)")])
def test_bad_device_counts_exit_2_before_any_work(tmp_path, value, message):
    r = invoke("run", "convergence", "--m", "100", "--ladder", "1", "--seeds", "1", "--devices", value,
               "--out", tmp_path)
    assert r.exit_code == 2 and message in r.output, r.output
    assert not any(tmp_path.iterdir())


def test_one_device_is_the_default_here(tmp_path):
    r = invoke("run", "convergence", "--m", "100", "--dry-run", "--out", tmp_path)
    assert r.exit_code == 0 and "1 device(s)" in r.output and "per device" not in r.output, r.output
