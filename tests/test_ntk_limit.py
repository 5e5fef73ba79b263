"""The closed-form limits H*: symmetry, definiteness, Monte-Carlo agreement, m^{-1/2} rates,
the exact exp-sign fluctuation constant, and negative controls that must fail the same tests."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, strategies as st
from jaxtyping import Array, Float

import theory as T
from theory.contracts import FrozenArrays, frozen_record
from theory.stats import fit_loglog_slope, mean_ci

MODELS = [("exp-sign", 1), ("softmax-sign", 2), ("prefix", 3)]
N, D = 4, 5


def inputs(seed, n=N, d=D, scale=1.0):
    rng = np.random.default_rng(seed)
    return scale * rng.normal(size=(n, d)) / np.sqrt(d)


def frozen_for(name, k, seed=0):
    _, frozen = T.init_model(name, key=jax.random.key(seed), m=2, d=D, k=k)
    return frozen


# ----------------------------------------------------------------- wrong limits (negative controls)


def wrong_prefix_limit(U1, U2, *, sigma, frozen):
    """The prefix H* with the ordering u_i u_j^T in place of u_j u_i^T."""
    V, s2, c = frozen.V, sigma**2, U1 @ U2.T
    VU1, VU2 = U1 @ V.T, U2 @ V.T
    iso = (1 + s2 * c)[:, :, None, None] * (V @ V.T)
    outer = (s2 * (2 + s2 * c))[:, :, None, None] * VU1[:, None, :, None] * VU2[None, :, None, :]
    return jnp.exp(s2 * c)[:, :, None, None] * (iso + outer)


def wrong_exp_sign_limit(U1, U2, *, sigma, frozen=None):
    """exp-sign H* missing the factor 1/2 in the exponent."""
    c = U1 @ U2.T
    sq = jnp.sum(U1**2, 1)[:, None] + jnp.sum(U2**2, 1)[None] + 2 * c
    return (c * jnp.exp(sigma**2 * sq))[:, :, None, None]


def wrong_softmax_limit(U1, U2, *, sigma, frozen):
    """softmax-sign H* missing the factor sigma^2 in the exponent."""
    c = U1 @ U2.T
    return (c * jnp.exp(c))[:, :, None, None] * jnp.eye(frozen.a.shape[0])


WRONG = {"exp-sign": wrong_exp_sign_limit, "softmax-sign": wrong_softmax_limit, "prefix": wrong_prefix_limit}
SIGMA = {"exp-sign": 0.7, "softmax-sign": 0.7, "prefix": 0.7}


def limits(name, k, U, sigma):
    frozen = frozen_for(name, k)
    return frozen, T.limit_kernel(name, U, sigma=sigma, frozen=frozen), WRONG[name](U, U, sigma=sigma, frozen=frozen)


def test_negative_controls_really_differ():
    U = inputs(0)
    for name, k in MODELS:
        _, right, wrong = limits(name, k, U, SIGMA[name])
        assert float(jnp.linalg.norm(right - wrong)) > 0.05 * float(jnp.linalg.norm(right)), name


# ----------------------------------------------------------------- symmetry and definiteness


@pytest.mark.parametrize("name, k", MODELS)
@given(seed=st.integers(0, 2**31 - 1), sigma=st.floats(0.1, 1.5), scale=st.floats(0.2, 2.0))
def test_limit_symmetric_positive_definite(name, k, seed, sigma, scale):
    U = inputs(seed, scale=scale)
    frozen = frozen_for(name, k, seed)
    H = T.limit_kernel(name, U, sigma=sigma, frozen=frozen)
    K = np.asarray(T.kernel_matrix(H))
    np.testing.assert_allclose(K, K.T, rtol=1e-12, atol=1e-14 * np.abs(K).max())
    lam = np.linalg.eigvalsh((K + K.T) / 2)
    if name == "prefix":
        # Blocks are V[...]V^T: positive definite iff V has full row rank k <= d (it does a.s.).
        assert lam[0] > 1e-10 * lam[-1]
    else:
        assert lam[0] > 1e-10 * lam[-1], (name, lam[:3])


@pytest.mark.parametrize("name, k", MODELS)
def test_limit_psd_with_repeated_input(name, k):
    U = inputs(1)
    U = np.concatenate([U, U[:1]])  # a repeated input makes H* singular but still PSD
    K = np.asarray(T.kernel_matrix(T.limit_kernel(name, U, sigma=0.8, frozen=frozen_for(name, k))))
    lam = np.linalg.eigvalsh((K + K.T) / 2)
    assert lam[0] > -1e-10 * lam[-1] and abs(lam[0]) < 1e-8 * lam[-1]


# ----------------------------------------------------------------- Monte Carlo inside a CLT band


def max_z(mc, target):
    se = np.maximum(np.asarray(mc.stderr), 1e-12 * float(jnp.max(jnp.abs(target))))
    return float(np.max(np.abs((np.asarray(mc.mean) - np.asarray(target)) / se)))


@pytest.mark.parametrize("name, k", MODELS)
def test_monte_carlo_mean_inside_clt_band(name, k):
    U = inputs(2)
    sigma = SIGMA[name]
    frozen, right, wrong = limits(name, k, U, sigma)
    fixed = {"V": frozen.V} if name == "prefix" else None
    mc = T.monte_carlo_kernel(name, U, key=jax.random.key(3), m=20_000, sigma=sigma, k=k, n_samples=16, fixed=fixed)
    # Bonferroni over <= 16*9 = 144 entries at 5 standard errors (t with 15 dof): a false alarm is rare.
    assert max_z(mc, right) < 5.5
    assert max_z(mc, wrong) > 20  # the same test rejects the wrong limit


# ----------------------------------------------------------------- m^{-1/2} rate


def kernel_errors(name, k, U, sigma, ms, seeds, target, fixed=None):
    err = np.zeros((len(ms), seeds))
    for a, m in enumerate(ms):
        for s in range(seeds):
            P, frozen = T.init_model(name, key=jax.random.fold_in(jax.random.key(11), 1000 * a + s), m=m, d=D, k=k,
                                     sigma=sigma)
            frozen = frozen.replace(**(fixed or {}))
            H = T.structured_ntk(name, P, frozen, U)
            err[a, s] = float(jnp.linalg.norm(H - target))
    return err


@pytest.mark.parametrize("name, k", MODELS)
def test_concentration_rate_and_wrong_limit_fails(name, k):
    # |u| ~ 0.5: with |u| ~ 1 and sigma = 0.7 the lognormal row weights are heavy-tailed enough
    # that sqrt(m) * error is still growing at m = 1e5 (the CLT sets in late); measured and noted.
    U = inputs(4, scale=0.5)
    sigma = SIGMA[name]
    frozen, right, wrong = limits(name, k, U, sigma)
    fixed = {"V": frozen.V} if name == "prefix" else None
    ms = [1000, 4000, 16000, 64000]
    fit = fit_loglog_slope(ms, kernel_errors(name, k, U, sigma, ms, 8, right, fixed))
    assert fit.contains(-0.5), fit
    assert fit.high - fit.low < 0.4, fit  # informative, not a vacuous interval
    bad = fit_loglog_slope(ms, kernel_errors(name, k, U, sigma, ms, 8, wrong, fixed))
    assert not bad.contains(-0.5), bad


# ----------------------------------------------------------------- exact exp-sign constant


def exp_sign_scaled_sq_errors(U, sigma, m, draws, target):
    out = []
    for s in range(draws):
        P, frozen = T.init_model("exp-sign", key=jax.random.fold_in(jax.random.key(7), s), m=m, d=D, sigma=sigma)
        out.append(m * float(jnp.sum((T.structured_ntk("exp-sign", P, frozen, U) - target) ** 2)))
    return np.array(out)


@pytest.mark.parametrize("m", [300, 3000])
def test_exp_sign_exact_fluctuation_constant(m):
    U = inputs(5, scale=0.8)
    sigma = 0.5
    C = float(T.exp_sign_fluctuation(U, sigma=sigma))
    right = T.limit_kernel("exp-sign", U, sigma=sigma)
    mean, lo, hi = mean_ci(exp_sign_scaled_sq_errors(U, sigma, m, 200, right), level=0.999)
    assert lo <= C <= hi, (C, mean, lo, hi)
    # Same test, wrong limit: m ||H - H_wrong||^2 grows with m and leaves the band.
    wrong = wrong_exp_sign_limit(jnp.asarray(U), jnp.asarray(U), sigma=sigma)
    _, lo_w, hi_w = mean_ci(exp_sign_scaled_sq_errors(U, sigma, m, 200, wrong), level=0.999)
    assert not (lo_w <= C <= hi_w)


def test_chebyshev_width():
    U = inputs(6, scale=0.8)
    C = float(T.exp_sign_fluctuation(U, sigma=0.5))
    lam = T.lambda_min(T.limit_kernel("exp-sign", U, sigma=0.5)).value
    m = T.chebyshev_width(C, t=lam / 4, delta=0.1)
    assert m == int(np.ceil(C / (0.1 * (lam / 4) ** 2)))
    with pytest.raises(T.InputError, match="delta"):
        T.chebyshev_width(C, t=1.0, delta=1.5)


# ----------------------------------------------------------------- a fourth model needs one registration


def test_new_model_gets_autodiff_ntk_and_monte_carlo():
    """``relu-sign``: f = m^{-1/2} sum_r a_r relu(<p_r,u>); only init and forward are written.

    Its limit is the degree-1 arc-cosine NTK in p: E[1{<p,u_i>>0} 1{<p,u_j>>0}] <u_i,u_j> =
    (pi - theta_ij) / (2 pi) <u_i, u_j>, independent of sigma.
    """

    @frozen_record
    class ReluFrozen(FrozenArrays):
        a: Float[Array, " m"]
        scale: Float[Array, ""]

    def init(*, key, m, d, k=1, sigma=1.0, dtype=jnp.float64, parametrization="ntk"):
        kp, ka = jax.random.split(key)
        return sigma * jax.random.normal(kp, (m, d), dtype), ReluFrozen(
            a=jax.random.rademacher(ka, (m,), dtype), scale=jnp.asarray(m ** -0.5, dtype))

    def forward(P, frozen, u):
        return frozen.scale * jnp.sum(frozen.a * jax.nn.relu(P @ u))[None]

    model = T.StylizedModel(name="relu-sign-test", description="test model", frozen_type=ReluFrozen, init=init,
                            forward=forward)
    U = inputs(8)
    mc = T.monte_carlo_kernel(model, U, key=jax.random.key(0), m=3000, sigma=1.0, n_samples=16)
    norms = np.linalg.norm(U, axis=1)
    cos = np.clip(U @ U.T / np.outer(norms, norms), -1, 1)
    target = ((np.pi - np.arccos(cos)) / (2 * np.pi) * (U @ U.T))[:, :, None, None]
    assert max_z(mc, target) < 5.5
    assert max_z(mc, 2 * target) > 20
