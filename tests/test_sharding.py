"""Row-sharded kernels (theory.scaling.sharding) equal the single-device ones to 1e-12 in float64, on 4
host devices; and the memory estimate bounds XLA's own accounting.

The device count must be fixed before JAX initialises, so the multi-device checks run in one
subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` that prints its results
as JSON; the tests below assert on them."""

import textwrap

import jax
import jax.numpy as jnp
import pytest

import theory as T
from theory.scaling import sharding as S
from multidevice import run_on_devices


SCRIPT = textwrap.dedent(r"""
    import json
    import jax, jax.numpy as jnp
    import numpy as np
    jax.config.update("jax_enable_x64", True)
    import theory as T
    from theory.scaling import sharding as S

    assert jax.device_count() == 4, jax.devices()
    mesh = S.device_mesh()
    out = {"devices": jax.device_count(), "ntk": {}, "outputs": {}, "attention": {}, "memory": {}}

    def rel(a, b):
        return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))

    d, chunk = 5, 64
    rng = np.random.default_rng(0)
    U1, U2 = 0.5 * rng.normal(size=(6, d)), 0.5 * rng.normal(size=(4, d))

    def compare(name, P, fr, key, Ps=None, frs=None, cross=True):
        Ps, frs = (P, fr) if Ps is None else (Ps, frs)
        for b, tag in ((None, "same"), (U2, "cross"))[: 2 if cross else 1]:
            H1 = T.structured_ntk(name, P, fr, U1, b, chunk_size=chunk)
            H4 = S.sharded_structured_ntk(name, Ps, frs, U1, b, mesh=mesh, chunk_size=chunk)
            out["ntk"][f"{key}/{tag}"] = [rel(H4, H1), list(H4.shape) == list(H1.shape)
                                          and bool(H4.sharding.is_fully_replicated)]
        F1 = T.model_outputs(name, P, fr, U1)
        F4 = S.sharded_model_outputs(name, Ps, frs, U1, mesh=mesh, chunk_size=chunk)
        out["outputs"][key] = rel(F4, F1)

    for name, k in (("exp-sign", 1), ("softmax-sign", 3), ("prefix", 2)):
        P, fr = T.init_model(name, key=jax.random.key(0), m=1000, d=d, k=k, sigma=0.8)
        P = P + 0.1 * jnp.asarray(rng.normal(size=P.shape))  # a trained state (P0 stays put)
        # P resident on the devices: 1000 rows, 250 per device, never gathered to one.
        Ps, frs = S.shard_model(name, P, fr, mesh)
        compare(name, P, fr, f"{name}/m=1000/resident", Ps, frs)
        shard_rows = {int(s.data.shape[0]) for s in Ps.addressable_shards}
        ma = S._ntk_jit.lower(Ps, frs, U1, None, name=name, mesh=mesh, chunk_size=chunk).compile().memory_analysis()
        est = S.estimate_ntk_bytes(name, m=1000, n1=6, d=d, k=k, chunk_size=chunk, devices=4)
        out["memory"][name] = {"shard_rows": sorted(shard_rows), "arg_bytes": int(ma.argument_size_in_bytes),
                               "row_bytes": int(P.nbytes + sum(getattr(fr, r).nbytes for r in T.get_model(name).row_axes)), "measured": int(ma.argument_size_in_bytes
                               + ma.temp_size_in_bytes + ma.output_size_in_bytes), "estimate": est.total}
    # m = 1001: 4 x 250 sharded rows plus a replicated tail of 1 (both reductions: sum and
    # online softmax); m = 3 < D: no sharding at all.  Trained states (P moved off P0).
    for name, k, m in (("softmax-sign", 3, 1001), ("prefix", 2, 1001), ("prefix", 2, 3)):
        P, fr = T.init_model(name, key=jax.random.key(1), m=m, d=d, k=k, sigma=0.8)
        P = P + 0.1 * jnp.asarray(rng.normal(size=P.shape))
        compare(name, P, fr, f"{name}/m={m}", cross=m > 3)

    X, P = rng.normal(size=(7, d)), rng.normal(size=(1003, d))
    W = [rng.normal(size=(d, 4)) / 2 for i in (4, 5, 6)]
    for causal in (True,):
        A1 = T.prefix_attention(X, P, *W, causal=causal, chunk_size=100)
        A4 = S.sharded_prefix_attention(X, P, *W, causal=causal, mesh=mesh, chunk_size=100)
        out["attention"][f"causal={causal}"] = rel(A4, A1)
    try:
        S.shard_rows(jnp.ones((5, 2)), mesh)
        out["uneven"] = "no error"
    except T.InputError as e:
        out["uneven"] = str(e)
    print("RESULT " + json.dumps(out))
""")


@pytest.fixture(scope="module")
def four_devices():
    return run_on_devices(SCRIPT, 4, timeout=300)


def test_four_devices_were_used(four_devices):
    assert four_devices["devices"] == 4


def test_sharded_ntk_equals_single_device(four_devices):
    assert len(four_devices["ntk"]) == 11
    for key, (err, ok) in four_devices["ntk"].items():
        assert ok, key
        assert err < 1e-12, (key, err)


def test_uneven_placement_is_refused_with_advice(four_devices):
    assert "choose m divisible by 4 (e.g. 4 or 8)" in four_devices["uneven"]


def test_sharded_outputs_equal_single_device(four_devices):
    for key, err in four_devices["outputs"].items():
        assert err < 1e-12, (key, err)


def test_sharded_prefix_attention_equals_single_device(four_devices):
    for key, err in four_devices["attention"].items():
        assert err < 1e-12, (key, err)


def test_rows_stay_sharded_and_estimate_bounds_xla(four_devices):
    for name, mem in four_devices["memory"].items():
        assert mem["shard_rows"] == [250], name
        # Each device's program holds a quarter of the rows (plus small replicated inputs), not all.
        assert mem["arg_bytes"] < 0.3 * mem["row_bytes"] + 4096, (name, mem)
        assert mem["measured"] <= mem["estimate"] <= 6 * mem["measured"] + 2**20, (name, mem)


# ----------------------------------------------------------------------------- single process


@pytest.mark.parametrize("name, k", [("exp-sign", 1), ("softmax-sign", 3), ("prefix", 2)])
def test_estimate_bounds_xla_single_device(name, k):
    """The cross kernel (U1 != U2) here; the 4-device subprocess checks U2 = U1."""
    model = T.get_model(name)
    for m, n, n2, c in [(3001, 48, 17, 256)]:
        P, fr = T.init_model(name, key=jax.random.key(0), m=m, d=8, k=k)
        U1, U2 = jnp.ones((n, 8)) * 0.01, None if n2 is None else jnp.ones((n2, 8)) * 0.01
        ma = model.structured_ntk.lower(P, fr, U1, U2, c).compile().memory_analysis()
        measured = ma.argument_size_in_bytes + ma.temp_size_in_bytes + ma.output_size_in_bytes
        est = S.estimate_ntk_bytes(name, m=m, n1=n, n2=n2, d=8, k=k, chunk_size=c)
        assert measured <= est.total <= 6 * measured, (m, n, n2, c, measured, est)


def test_choose_chunk_size_fits_or_refuses_with_the_fix():
    kw = dict(m=10**6, n1=128, d=16, k=1)
    big = S.choose_chunk_size("prefix", budget=2**30, **kw)
    assert big == 4096
    small = S.choose_chunk_size("prefix", budget=S.estimate_ntk_bytes("prefix", chunk_size=64, **kw).total, **kw)
    assert small == 64
    assert S.estimate_ntk_bytes("prefix", chunk_size=small, **kw).total <= S.estimate_ntk_bytes(
        "prefix", chunk_size=64, **kw).total
    with pytest.raises(S.NtkMemoryError, match=r"needs 2\.\d+ GiB per device.*shard the rows over >= 2 devices"):
        S.choose_chunk_size("prefix", m=10**7, n1=128, d=16, k=1, budget=2 * 2**30)
    with pytest.raises(S.NtkMemoryError, match=r"blocks of <= \d+ inputs"):
        S.choose_chunk_size("softmax-sign", m=1000, n1=20000, d=16, k=1, budget=2**30)
    # Sharding the rows divides the per-device input memory.
    one = S.estimate_ntk_bytes("prefix", m=10**7, n1=128, d=16, devices=1)
    four = S.estimate_ntk_bytes("prefix", m=10**7, n1=128, d=16, devices=4)
    assert four.inputs == one.inputs // 4 or abs(four.inputs * 4 - one.inputs) < 4 * 128 * 16 * 8


def test_bad_requests_name_the_problem():
    mesh = S.device_mesh()
    P, fr = T.init_model("exp-sign", key=jax.random.key(0), m=10, d=2)
    model = T.StylizedModel(name="no-rule", description="", frozen_type=type(fr), init=None, forward=None)
    with pytest.raises(T.InputError, match="no row-sharded rule"):
        S.sharded_structured_ntk(model, jnp.ones((4, 2)), fr, jnp.ones((2, 2)), mesh=mesh)
    with pytest.raises(T.InputError, match="ExpSignFrozen"):  # another model's record
        S.sharded_structured_ntk("prefix", P, fr, jnp.ones((2, 2)), mesh=mesh)
    with pytest.raises(T.InputError, match="NaN"):
        S.sharded_structured_ntk("exp-sign", P.at[3, 1].set(jnp.nan), fr, jnp.ones((2, 2)), mesh=mesh)
    with pytest.raises(T.LogitOverflowError):
        S.sharded_structured_ntk("exp-sign", 500 * P, fr, jnp.ones((2, 2)), mesh=mesh)
