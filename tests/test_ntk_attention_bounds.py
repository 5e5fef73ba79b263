"""The NTK-Attention error bound (docs/ntk_attention_bound.md) against measurements.

Inputs in the regime: every prefix logit ``|<q, k_r>|/sqrt(d) <= beta``.  Random draws are
rescaled so that the largest prefix logit magnitude equals beta; adversarial draws use block
weights (``W_Q = W_K = [I; 0]``, ``W_V = [0; I]``) so that queries, keys and values are set
directly: every prefix logit at -beta or +beta, a single dominant value row, causal masks.
"""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import find, given, settings, strategies as st

from theory.ntk_attn.ntk_attention import ntk_attention, prefix_summary
from theory.ntk_attn.bounds import (
    break_even_length,
    degree_needed,
    flop_counts,
    instance_output_bound,
    ntk_parameter_count,
    output_error_bound,
    prefix_logit_max,
    prefix_parameter_count,
    scale_to_logit_bound,
    weight_error,
)
from theory.validation import InputError

PATTERNS = ("random", "minus", "plus", "signs", "dominant")


def wrong_weight_error(beta, g):
    """The deliberately wrong bound: the exponential factor dropped."""
    return beta ** (g + 1) / math.factorial(g + 1)


def logits(X, P, W_Q, W_K, causal=False):
    Q = X @ W_Q
    z_P, z_X = Q @ (P @ W_K).T / np.sqrt(W_Q.shape[1]), Q @ (X @ W_K).T / np.sqrt(W_Q.shape[1])
    if causal:
        z_X = np.where(np.tril(np.ones_like(z_X)) > 0, z_X, -np.inf)
    return z_P, z_X


def reference(args, causal=False):
    """Exact prefix attention in NumPy float64 plus, per query row: beta_i, spread_i, prefix share pi_i."""
    X, P, W_Q, W_K, W_V = (np.asarray(a, np.float64) for a in args)
    z_P, z_X = logits(X, P, W_Q, W_K, causal)
    mx = np.maximum(z_P.max(1), z_X.max(1))[:, None]
    a_P, a_X = np.exp(z_P - mx), np.exp(z_X - mx)
    D = a_P.sum(1) + a_X.sum(1)
    o = (a_P @ (P @ W_V) + a_X @ (X @ W_V)) / D[:, None]
    spread = np.max(np.abs((P @ W_V)[None] - o[:, None]), axis=(1, 2))
    return o, np.abs(z_P).max(1), spread, a_P.sum(1) / D


def instance(pattern, *, m, L, d_k, beta, alpha, seed, d_v=2):
    """(X, P, W_Q, W_K, W_V) with every prefix logit in [-beta, beta] and the max equal to beta."""
    rng = np.random.default_rng(seed)
    if pattern == "random":
        d = d_k + d_v
        X, P = rng.normal(size=(L, d)), rng.normal(size=(m, d))
        W = [rng.normal(size=(d, d_)) / np.sqrt(d) for d_ in (d_k, d_k, d_v)]
        s = np.sqrt(beta / np.abs(logits(X, P, W[0], W[1])[0]).max())  # logits are bilinear in (X, P)
        return [jnp.asarray(a) for a in (s * X, s * P, *W)]
    u = rng.normal(size=d_k)
    u /= np.linalg.norm(u)
    q = alpha * u  # every query; input keys equal the queries (W_K = W_Q)
    t = beta * np.sqrt(d_k) / alpha  # prefix key length giving |logit| = beta
    if pattern == "minus":
        s, V_P, V_X = -np.ones(m), np.ones((m, d_v)), -np.ones((L, d_v))
    elif pattern == "plus":
        s, V_P, V_X = np.ones(m), np.ones((m, d_v)), -np.ones((L, d_v))
    elif pattern == "signs":
        s, V_P, V_X = rng.choice([-1.0, 1.0], m), rng.normal(size=(m, d_v)), rng.normal(size=(L, d_v))
    else:  # dominant: logits spread over [-beta, beta], one large value on the smallest weight
        s = np.concatenate([[-1.0], rng.uniform(-1, 1, m - 1)]) if m > 1 else np.array([-1.0])
        V_P, V_X = rng.normal(size=(m, d_v)), rng.normal(size=(L, d_v))
        V_P[0] = 50.0
    X = np.concatenate([np.tile(q, (L, 1)), V_X], axis=1)
    P = np.concatenate([np.outer(s, t * u), V_P], axis=1)
    I_k, I_v = np.eye(d_k + d_v)[:, :d_k], np.eye(d_k + d_v)[:, d_k:]
    return [jnp.asarray(a) for a in (X, P, I_k, I_k, I_v)]


def measured(args, g, causal):
    X, P, W_Q, W_K, W_V = args
    S = prefix_summary(P, W_K, W_V, feature="taylor", g=g)
    out = ntk_attention(X, S, W_Q, W_K, W_V, feature="taylor", g=g, causal=causal)
    return np.max(np.abs(np.asarray(out) - reference(args, causal)[0]), axis=1)


def bounds_np(args, g, causal):
    """Per-row bounds in NumPy: {(form, refined): (L,)} as in docs/ntk_attention_bound.md."""
    _, betas, spread, pi = reference(args, causal)
    out = {}
    for form in ("closed", "exact", "spec"):
        eps = np.array([weight_error(b, g, form=form) for b in betas])
        out[(form, False)] = output_error_bound(eps, spread)
        out[(form, True)] = output_error_bound(eps, spread, prefix_fraction=np.clip(pi, 0, 1))
    return out


def min_degree(beta, eps_max=0.9):
    return next(g for g in range(200) if weight_error(beta, g) < eps_max)


@st.composite
def regime(draw, patterns=PATTERNS):
    beta = draw(st.sampled_from([0.1, 0.5, 1.0, 2.0, 3.0]))
    g0 = min_degree(beta)
    return dict(
        pattern=draw(st.sampled_from(patterns)),
        m=draw(st.sampled_from([1, 40])),
        L=draw(st.sampled_from([1, 3])),
        d_k=draw(st.sampled_from([1, 2])),
        beta=beta,
        alpha=draw(st.sampled_from([0.5, 1.0, 2.0])),
        seed=draw(st.integers(0, 2**16)),
        g=draw(st.integers(g0, g0 + 2)),
        causal=draw(st.booleans()),
    )


# --- the weight error --------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.05, 0.5, 1.0, 2.5, 4.0])
@pytest.mark.parametrize("g", [0, 1, 2, 3, 6, 12])
def test_weight_error_forms(beta, g):
    z = np.linspace(-beta, beta, 4001)
    T = sum(z**j / math.factorial(j) for j in range(g + 1))
    sup = np.max(np.abs(np.exp(-z) * T - 1))  # attained at z = -beta (an end point of the grid)
    exact, closed, spec = (weight_error(beta, g, form=f) for f in ("exact", "closed", "spec"))
    assert exact == pytest.approx(sup, rel=1e-9, abs=1e-15)
    assert wrong_weight_error(beta, g) <= exact <= closed <= spec
    assert closed == pytest.approx(beta ** (g + 1) * math.exp(beta) / math.factorial(g + 1), rel=1e-12)
    assert spec == pytest.approx(closed * math.exp(beta), rel=1e-12)  # the spec is loose by e^beta


def test_closed_form_is_asymptotically_tight():
    ratios = [weight_error(2.0, g, form="exact") / weight_error(2.0, g) for g in (1, 4, 16, 64)]
    assert all(a < b for a, b in zip(ratios, ratios[1:])) and ratios[-1] > 0.95
    assert weight_error(1e-3, 2, form="exact") / weight_error(1e-3, 2) > 0.999


# --- the output bound ----------------------------------------------------------------------------


def test_error_identity_and_attained_bound():
    """o^ - o = sum_r w_r delta_r (v_r - o)/D^ ; for odd g and all logits at -beta: equality."""
    args = instance("minus", m=6, L=3, d_k=2, beta=1.0, alpha=1.0, seed=0)
    for g, rel in ((3, 1e-9), (2, None)):
        err = measured(args, g, causal=False)
        bound = instance_output_bound(*args, g=g, form="exact", refined=True)
        rho = weight_error(1.0, g, form="exact")
        X, P, W_Q, W_K, W_V = (np.asarray(a) for a in args)
        pi = 6 * np.exp(-1.0) / (6 * np.exp(-1.0) + 3 * np.exp(1.0 / np.sqrt(2)))
        if rel:  # odd g: delta_r = -rho, the refined bound is attained
            np.testing.assert_allclose(err, bound, rtol=rel)
        else:  # even g: ratio (1 - rho pi) / (1 + rho pi)
            np.testing.assert_allclose(err / bound, (1 - rho * pi) / (1 + rho * pi), rtol=1e-9)


@given(case=regime())
@settings(max_examples=14)
def test_bound_holds_in_the_regime(case):
    g, causal = case.pop("g"), case.pop("causal")
    args = instance(**case)
    assert np.max(reference(args)[1]) == pytest.approx(case["beta"], rel=1e-12)
    err = measured(args, g, causal)
    tol = 1e-12 * (1 + float(np.max(np.abs(np.asarray(args[1] @ args[4])))))
    bounds = bounds_np(args, g, causal)
    for b in bounds.values():
        assert np.all(err <= b + tol)
    V_inf = float(np.max(np.abs(np.concatenate([args[1] @ args[4], args[0] @ args[4]]))))
    eps = weight_error(case["beta"], g)
    assert np.all(err <= output_error_bound(eps, 2 * V_inf) + tol)  # the coarse ||V||_inf form
    if case["pattern"] == "minus":  # tightness: the refined exact bound is nearly attained
        b = bounds[("exact", True)]
        live = b > 1e-9
        rho = weight_error(case["beta"], g, form="exact")
        assert np.all(err[live] / b[live] >= (1 - rho) / (1 + rho) - 1e-9)
        n_vis = np.arange(1, case["L"] + 1) if causal else np.full(case["L"], case["L"])
        W_P = case["m"] * np.exp(-case["beta"])
        pi = W_P / (W_P + n_vis * np.exp(case["alpha"] ** 2 / np.sqrt(case["d_k"])))
        big = live & (pi >= 0.5)  # the spec's shape eps/(1-eps) loses the factor pi, else tight
        assert np.all(err[big] / bounds[("closed", False)][big] >= 1e-3)


def test_wrong_bound_is_violated():
    """Dropping the exponential factor gives a 'bound' that some input in the regime breaks."""

    def violates(case):
        args = instance(case["pattern"], m=8, L=2, d_k=1, beta=case["beta"], alpha=case["alpha"], seed=0)
        eps = wrong_weight_error(case["beta"], case["g"])
        if eps >= 0.5:
            return False
        spread = reference(args)[2]
        return bool(np.any(measured(args, case["g"], False) > output_error_bound(eps, spread) * (1 + 1e-9)))

    cases = st.fixed_dictionaries({
        "pattern": st.sampled_from(["plus", "signs", "dominant", "minus"]),
        "beta": st.sampled_from([0.5, 1.0, 2.0, 3.0]),
        "alpha": st.sampled_from([0.5, 2.0]),
        "g": st.integers(1, 4),
    })
    found = find(cases, violates, settings=settings(max_examples=300, database=None, derandomize=True))
    args = instance(found["pattern"], m=8, L=2, d_k=1, beta=found["beta"], alpha=found["alpha"], seed=0)
    # ... while the derived bound holds on that very input
    assert np.all(measured(args, found["g"], False) <= instance_output_bound(*args, g=found["g"]) + 1e-12)


# --- degree, monotonicity, costs ---------------------------------------------------------------


def test_error_decreases_in_g_and_meets_the_target_degree():
    beta, d_k = 1.0, 2
    errs = []
    for seed in range(3):
        args = instance("random", m=64, L=3, d_k=d_k, beta=beta, alpha=1.0, seed=seed)
        errs.append([float(np.max(measured(args, g, False))) for g in range(1, 6)])
    mean = np.mean(errs, axis=0)  # g = 1..5
    # Odd g under-weights every prefix row (delta_r <= 0) while even g over-weights the z < 0 side
    # and under-weights z > 0, which partly cancels in the output: compare within a parity, and
    # the overall log-linear trend.
    assert np.all(mean[2:] <= mean[:-2]), mean
    assert np.polyfit(np.arange(1, 6), np.log(mean), 1)[0] < -1.0, mean
    for m, c in ((64, 1.0), (4096, 0.5), (4096, 1.0)):
        args = instance("random", m=m, L=3, d_k=d_k, beta=beta, alpha=1.0, seed=m)
        V_inf = float(np.max(np.abs(np.concatenate([args[1] @ args[4], args[0] @ args[4]]))))
        g = degree_needed(m, c=c, beta=beta, spread=2 * V_inf)
        assert float(np.max(measured(args, g, False))) <= m**-c


def test_degree_needed_grows_like_log_over_loglog():
    gs = {k: degree_needed(10**k, c=1.0, beta=1.0) for k in (2, 4, 8, 16, 64, 256)}
    assert all(gs[a] <= gs[b] for a, b in zip(list(gs), list(gs)[1:]))
    ratios = [g / (k * math.log(10) / math.log(k * math.log(10))) for k, g in gs.items()]
    assert 0.5 < min(ratios) and max(ratios) < 2.5
    with pytest.raises(InputError, match="no degree"):
        degree_needed(10**6, c=1.0, beta=50.0, g_max=20)
    for bad, name in ((dict(m=0, c=1, beta=1), "m"), (dict(m=10, c=0, beta=1), "c"),
                      (dict(m=10, c=1, beta=-1), "beta")):
        with pytest.raises(InputError, match=name):
            degree_needed(bad.pop("m"), **bad)


@pytest.mark.parametrize("causal", [False, True])
def test_instance_bound_and_logit_scaling(causal):
    X, P, W_Q, W_K, W_V = instance("random", m=9, L=3, d_k=2, beta=1.0, alpha=1.0, seed=3)
    Xs, Ps = scale_to_logit_bound(3 * X, 3 * P, W_Q, W_K, beta=0.7)
    assert float(prefix_logit_max(Xs, Ps, W_Q, W_K)) == pytest.approx(0.7, rel=1e-12)
    np.testing.assert_allclose(prefix_logit_max(Xs, Ps, W_Q, W_K, per_row=True),
                               reference((Xs, Ps, W_Q, W_K, W_V))[1], rtol=1e-12)
    args = (Xs, Ps, W_Q, W_K, W_V)
    ref = bounds_np(args, 3, causal)
    for (form, refined), b in ref.items():
        got = instance_output_bound(*args, g=3, causal=causal, form=form, refined=refined)
        np.testing.assert_allclose(got, b, rtol=1e-10)
    assert np.all(measured(args, 3, causal) <= ref[("exact", True)] + 1e-13)
    with pytest.raises(InputError, match="P"):
        instance_output_bound(X, P[:, :2], W_Q, W_K, W_V, g=3)
    with pytest.raises(InputError, match="beta"):
        scale_to_logit_bound(X, P, W_Q, W_K, beta=-1.0)


def test_output_bound_and_counts():
    assert output_error_bound(0.5, 2.0) == pytest.approx(2.0)
    assert output_error_bound(0.5, 2.0, prefix_fraction=0.5) == pytest.approx(2 / 3)
    assert output_error_bound(1.0, 2.0) == math.inf
    np.testing.assert_allclose(output_error_bound(np.array([0.1, 2.0]), 1.0), [1 / 9, np.inf])
    for kw, name in ((dict(eps=-1, spread=1), "eps"), (dict(eps=0.1, spread=np.nan), "spread"),
                     (dict(eps=0.1, spread=1, prefix_fraction=2), "prefix_fraction")):
        with pytest.raises(InputError, match=name):
            output_error_bound(kw.pop("eps"), kw.pop("spread"), **kw)
    with pytest.raises(InputError, match="form"):
        weight_error(1.0, 2, form="bogus")
    d, r = 64, math.comb(66, 2)
    assert ntk_parameter_count(r, d) == r * d + r
    m_star = break_even_length(r, d)
    assert m_star == (r * d + r) / (2 * d)
    assert prefix_parameter_count(math.floor(m_star), d) < ntk_parameter_count(r, d)
    assert prefix_parameter_count(math.ceil(m_star), d) >= ntk_parameter_count(r, d)
    assert prefix_parameter_count(10, 4, key_value=False) == 40
    f = flop_counts(128, 10**6, 64, 64, r)
    assert f["prefix"] > f["ntk"] > 0


@pytest.mark.parametrize("form", ["closed", "exact", "spec"])
def test_bounds_beyond_the_float_range_are_inf_not_overflow(form):
    """issue 25: weight_error(800, 3) raised a bare OverflowError; beyond the float range it is inf."""
    assert weight_error(800, 3, form=form) == math.inf
    assert weight_error(1e8, 0, form=form) == math.inf
    assert math.isfinite(weight_error(300, 3, form=form))  # spec: e^{2 beta} overflows from beta ~ 355
    # Just below the edge the exact series still agrees with the closed form's ordering.
    assert weight_error(650, 2, form="exact") <= weight_error(650, 2, form="closed")
    assert output_error_bound(math.inf, 1.0) == math.inf
    assert output_error_bound(math.inf, 1.0, prefix_fraction=0.0) == 0.0
    with pytest.raises(InputError, match="eps"):
        output_error_bound(np.nan, 1.0)
    with pytest.raises(InputError, match="degree"):
        degree_needed(16, c=0.5, beta=800, g_max=20)


@given(norm=st.floats(1e-3, 1e4), seed=st.integers(0, 2**16), g=st.integers(0, 12),
       form=st.sampled_from(["closed", "exact", "spec"]), refined=st.booleans())
@settings(max_examples=40, deadline=None)
def test_instance_bound_never_raises_for_large_token_norms(norm, seed, g, form, refined):
    """Token norms up to 1e4 (prefix logits up to ~1e8): the bound is finite, inf, or InputError, never OverflowError."""
    rng = np.random.default_rng(seed)
    d = 3
    X, P = rng.standard_normal((2, d)), rng.standard_normal((5, d))
    X, P = norm * X / np.linalg.norm(X, axis=1, keepdims=True), norm * P / np.linalg.norm(P, axis=1, keepdims=True)
    W_Q, W_K, W_V = (rng.standard_normal((d, d)) / math.sqrt(d) for _ in range(3))
    try:
        b = instance_output_bound(X, P, W_Q, W_K, W_V, g=g, form=form, refined=refined)
    except InputError:
        return
    assert b.shape == (2,) and np.all((b >= 0) & ~np.isnan(b))
    beta = float(prefix_logit_max(X, P, W_Q, W_K))
    assert np.isfinite(weight_error(beta, g, form=form)) or np.all(np.isinf(b) | (b == 0))
