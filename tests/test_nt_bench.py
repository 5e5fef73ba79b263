"""``sims bench suite`` runs end to end at tiny sizes and writes its results through sims.core.store.

No timing is asserted: these are measurements.  Only that every implementation ran (or says why
not), agrees with the structured NTK, and that the files exist."""

import json

import jax
import jax.numpy as jnp
import pytest

import theory as T
from cli_runner import invoke
from sims.bench import suite as bs


# nt's structured derivatives call lu.wrap_init without debug_info (deprecated in JAX 0.10; known, opt-in path).
@pytest.mark.filterwarnings("ignore:linear_util.wrap_init is missing a DebugInfo:DeprecationWarning")
@pytest.mark.nt
def test_bench_suite_tiny(tmp_path):
    r = invoke("bench", "suite", "--model", "prefix", "--m", "48", "--m", "96", "--n", "3", "--d", "4", "--k", "2",
               "--repeats", "1", "--gd-m", "48", "--fit-m", "48", "--fit-m", "96", "--gemm-size", "64",
               "--chunk-size", "32", "--out", tmp_path)
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "bench" / "suite-float64.json").read_text())
    md = (tmp_path / "bench" / "suite-float64.md").read_text()
    assert "Machine:" in md and "GFLOP/s" in md and "Largest m" in md
    assert res["gemm"]["square"]["flop_per_s"] > 0
    assert res["machine"]["before"]["cores"] >= 1 and res["provenance"]["dtype"] == "float64"
    rows = res["ntk"]
    assert {r["impl"] for r in rows} == set(bs.IMPLS) and {r["m"] for r in rows} == {48, 96}
    for row in rows:
        if row["note"].startswith("skipped: neural-tangents"):  # nt not importable here
            continue
        assert row["time_s"] is not None and row["work_bytes"] is not None, row
        if row["impl"] != "structured":
            assert row["rel_err"] < 1e-10, row
        else:
            assert row["flop_per_s"] > 0 and row["fraction_of_gemm_same_time"] > 0
            assert row["floor_s"] > 0 and row["exp_pass_s"] > 0 and row["symmetric_gram_flops"] > 0
    _check_bench_figure(tmp_path)
    assert {r["impl"] for r in res["gd_step"]} == set(bs.GD_IMPLS)
    assert all(r["time_s"] is not None or r["note"].startswith("skipped") for r in res["gd_step"])
    assert {r["impl"] for r in res["max_m"]} == set(bs.IMPLS)
    assert all(r["m_max"] or r["note"] for r in res["max_m"])


def _check_bench_figure(results):
    """figures/bench_suite.py builds from the saved suite, byte-identical twice, TrueType fonts only."""
    from figures import common

    outs = [results / "fig-a", results / "fig-b"]
    built = [common.build("bench_suite", results, out) for out in outs]
    assert [p.name for p in built[0]] == ["bench_suite.pdf", "bench_suite.png"]
    for pa, pb in zip(*built):
        assert pa.read_bytes() == pb.read_bytes(), pa.name
    pdf = built[0][0].read_bytes()
    assert b"/Type3" not in pdf and b"/FontFile2" in pdf
    # no saved suite: a clear error, exit code 2, nothing written
    r = invoke("figures", "--results", results / "empty", "--out", results / "fig-c", "--only", "bench_suite")
    assert r.exit_code == 2 and "no benchmark suite" in r.output, r.output
    assert not (results / "fig-c").exists()


def test_bench_suite_bad_options(tmp_path):
    assert invoke("bench", "suite", "--impl", "auto", "--out", tmp_path).exit_code == 2
    assert invoke("bench", "suite", "--m", "1.5", "--out", tmp_path).exit_code == 2
    assert invoke("bench", "suite", "--fit-m", "10", "--out", tmp_path).exit_code == 2
    assert invoke("bench", "suite", "--model", "foo", "--out", tmp_path).exit_code == 2
    assert invoke("bench", "suite", "--precision", "float16", "--out", tmp_path).exit_code == 2
    assert not (tmp_path / "bench").exists()


def test_structured_flops_count():
    # exp-sign: per row 2nd (logits) + 2n (exp, sign) + 2n^2 (Gram).
    assert bs.structured_flops("exp-sign", m=10, n=4, d=3) == 10 * (24 + 8 + 32)
    # prefix: the Gram blocks S^T S, S^T T, T^T T: 2(n^2 + n nk + (nk)^2) = 2 * 12 at n = 2, k = 1.
    assert bs.structured_flops("prefix", m=1, n=2, d=3, k=1) == 4 * 2 * 3 + 4 * 3 + 10 + 10 + 2 * 12


def _xla_flops(name, *, m, n, d, k):
    """XLA's own flop count of the structured NTK compiled as one chunk (a loop body is counted once)."""
    model = T.get_model(name)
    P, fr = T.init_model(name, key=jax.random.PRNGKey(0), m=m, d=d, k=k)
    U = jnp.ones((n, d), P.dtype)
    compiled = jax.jit(model.structured_ntk, static_argnames="chunk_size").lower(P, fr, U, None, chunk_size=m).compile()
    ca = compiled.cost_analysis()
    ca = ca[0] if isinstance(ca, list) else ca
    if not ca or not ca.get("flops"):
        pytest.skip("this backend has no cost analysis")
    return ca["flops"]


@pytest.mark.parametrize("name,k", [("exp-sign", 1), ("softmax-sign", 1), ("softmax-sign", 3), ("prefix", 1),
                                    ("prefix", 3)])
def test_structured_flops_match_xla_cost_analysis(name, k):
    # The roofline column divides this analytic count by the time; XLA counts the compiled program.
    # Compiled as one chunk, XLA computes the logits P U^T once for both passes (softmax
    # statistics, then the kernel), so it counts 2 n d per row fewer for the two-pass models.
    m, n, d = 512, 16, 8
    shared = 2 * n * d * m if name != "exp-sign" else 0
    xla = _xla_flops(name, m=m, n=n, d=d, k=k)
    assert 0.95 < xla / (bs.structured_flops(name, m=m, n=n, d=d, k=k) - shared) < 1.05
    if name == "prefix" and k == 3:
        # Negative control: counting one GEMM over the concatenation [S, T] (width n(1 + k)),
        # which the kernel no longer does, overstates the work beyond the band.
        old_gram, new_gram = 2 * (n * (1 + k)) ** 2, 2 * (n * n + n * n * k + (n * k) ** 2)
        old = bs.structured_flops(name, m=m, n=n, d=d, k=k) + m * (old_gram - new_gram)
        assert not 0.95 < xla / (old - shared) < 1.05


def test_recorded_turns_skips_and_failures_into_notes():
    from sims.bench.common import Skip, recorded

    rows, shown = [], []
    for exc in (Skip("over budget"), ValueError("bad shape")):
        with recorded({"note": ""}, rows, shown.append):
            raise exc
    with recorded({"note": "", "time_s": 1.0}, rows, shown.append):
        pass
    assert [r["note"] for r in rows] == ["skipped: over budget", "failed: ValueError: bad shape", ""]
    assert shown == rows
    with pytest.raises(KeyboardInterrupt):  # an interrupt is not a measurement
        with recorded({"note": ""}, rows):
            raise KeyboardInterrupt


def test_timed_warm_adds_one_untimed_call():
    calls = []

    def fn():
        calls.append(None)
        return jnp.zeros(())

    assert bs._timed(fn) >= 0 and len(calls) == 1
    assert bs._timed(fn, warm=True) >= 0 and len(calls) == 3
