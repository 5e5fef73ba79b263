"""neural-tangents 0.6.5 through sims.bench.ntcompat: it imports without tensorflow, and agrees with
the project's own empirical NTK, Monte-Carlo kernel and kernel-regression dynamics.

Every test skips, with the reason, when nt cannot be imported (not installed, or a future JAX
removed more than ntcompat patches)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import theory as T

pytestmark = pytest.mark.nt
ROOT = Path(__file__).resolve().parent.parent
# One set of shapes for every test, so jit compilations are shared between them.
M, D, N1, N2, CHUNK = 37, 4, 5, 3, 8


@pytest.fixture(scope="module")
def nt():
    from sims.bench.ntcompat import import_neural_tangents

    try:
        return import_neural_tangents()
    except ImportError as e:
        pytest.skip(f"neural-tangents cannot be imported: {e}")


def k_of(name):
    return T.get_model(name).fixed_k or 2


def inputs(seed, n, d, scale=0.6):
    return scale * jax.random.normal(jax.random.key(seed), (n, d)) / np.sqrt(d)


def rel_err(a, b):
    return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


# ----------------------------------------------------------------------------- import hygiene


def test_import_keeps_tensorflow_out(nt):
    """In a fresh process, with a finder that records any attempt to import TF or its bridges."""
    code = textwrap.dedent("""
        import sys
        tried = []
        class Recorder:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("tensorflow", "tf2jax") or name.startswith("jax.experimental.jax2tf"):
                    tried.append(name)
                return None
        sys.meta_path.insert(0, Recorder())
        from sims.bench.ntcompat import import_neural_tangents
        nt = import_neural_tangents()
        assert nt.__version__ == "0.6.5", nt.__version__
        assert "tensorflow" not in sys.modules and "tf2jax" not in sys.modules
        assert not tried, tried
        import theory
        assert "sims.bench.ntcompat" in sys.modules
        print("ok")
    """)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stderr[-3000:]


def test_theory_does_not_import_nt():
    """``import theory`` must not import neural_tangents or ntcompat; nothing else in theory/ names nt."""
    code = "import sys, theory; assert 'neural_tangents' not in sys.modules and 'sims.bench.ntcompat' not in sys.modules"
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    offenders = [p.name for p in (ROOT / "theory").glob("*.py")
                 if p.name != "ntcompat.py" and "neural_tangents" in p.read_text()]
    assert not offenders, offenders


def test_patches_are_the_documented_ones(nt):
    from sims.bench.ntcompat import PATCHES

    allowed = ("neural_tangents.experimental:", "jax.core.", "jax.util:", "jax.interpreters.ad.",
               "neural_tangents._src.empirical.", "Primitive.map_primitive:")
    assert all(p.startswith(allowed) for p in PATCHES), PATCHES
    assert any(p.startswith("neural_tangents.experimental:") for p in PATCHES) or "neural_tangents" in sys.modules
    with pytest.raises(AttributeError, match="disabled"):
        nt.experimental.empirical_ntk_fn_tf  # noqa: B018


def test_auto_is_refused(nt):
    from sims.bench.ntcompat import nt_model_ntk_fn

    with pytest.raises(ValueError, match="AUTO"):
        nt_model_ntk_fn("exp-sign", implementation="auto")


# ----------------------------------------------------------------------------- empirical NTK


@pytest.mark.parametrize("name", T.model_names())
@pytest.mark.parametrize("implementation", ["jacobian_contraction", "ntk_vector_products"])
def test_empirical_ntk_matches_nt(nt, name, implementation):
    from sims.bench.ntcompat import nt_model_ntk_fn

    k = k_of(name)
    P, frozen = T.init_model(name, key=jax.random.key(3), m=M, d=D, k=k, sigma=0.8)
    P = P + 0.2 * jax.random.normal(jax.random.key(4), P.shape)  # off the initial point
    U1, U2 = inputs(1, N1, D), inputs(2, N2, D)
    fn = nt_model_ntk_fn(name, implementation=implementation)
    model = T.get_model(name)
    pairs = [(U1, U2), (U1, None)] if implementation == "jacobian_contraction" else [(U1, U2)]
    for a, b in pairs:
        H_nt = fn(P, frozen, a, b)
        n2 = (a if b is None else b).shape[0]
        assert H_nt.shape == (a.shape[0], n2, k, k)
        # The project's NTK: structured where the model has one (it equals autodiff to 1e-10,
        # tests/test_ntk_empirical.py), else the autodiff reference.
        if model.structured_ntk is not None:
            ours = T.structured_ntk(name, P, frozen, a, b, chunk_size=CHUNK)
        else:
            ours = T.autodiff_model_ntk(name, P, frozen, a, b)
        assert rel_err(H_nt, ours) < 1e-12
    if implementation == "jacobian_contraction":
        assert rel_err(fn(P, frozen, U1, U2), T.autodiff_model_ntk(name, P, frozen, U1, U2)) < 1e-12


def test_nt_default_trace_axes_average_outputs(nt):
    """nt's default ``trace_axes=(-1,)`` is the *mean* of the diagonal output blocks, not the full kernel."""
    name, k = "softmax-sign", 2
    P, frozen = T.init_model(name, key=jax.random.key(5), m=M, d=D, k=k)
    U = inputs(6, N1, D)

    def f(P, U):
        return jax.vmap(T.get_model(name).forward, in_axes=(None, None, 0))(P, frozen, U)

    H_default = nt.empirical_ntk_fn(f, implementation=nt.NtkImplementation.JACOBIAN_CONTRACTION)(U, None, P)
    H = T.structured_ntk(name, P, frozen, U, chunk_size=CHUNK)
    assert H_default.shape == (N1, N1)
    np.testing.assert_allclose(H_default, jnp.trace(H, axis1=2, axis2=3) / k, rtol=1e-12)
    assert rel_err(H_default, jnp.trace(H, axis1=2, axis2=3)) > 0.5  # a sum would be k times larger


# nt's structured derivatives call lu.wrap_init without debug_info (deprecated in JAX 0.10; known, opt-in path).
@pytest.mark.filterwarnings("ignore:linear_util.wrap_init is missing a DebugInfo:DeprecationWarning")
@pytest.mark.parametrize("name", ["exp-sign", "softmax-sign", "prefix"])
def test_structured_derivatives_shim(name):
    """The opt-in experimental shim: nt's STRUCTURED_DERIVATIVES against the autodiff NTK."""
    from sims.bench.ntcompat import structured_derivatives_ok

    ok, detail = structured_derivatives_ok(name, rtol=1e-12)
    if not ok and not detail.startswith("max relative error"):
        pytest.skip(f"nt STRUCTURED_DERIVATIVES unavailable on jax {jax.__version__}: {detail}")
    assert ok, detail


# ----------------------------------------------------------------------------- Monte Carlo


def _nt_mc(nt, name, frozen, U, *, key, m, sigma, n_samples):
    model = T.get_model(name)
    k = frozen.V.shape[0] if "V" in frozen.field_names() else (frozen.a.shape[0] if frozen.a.ndim == 2 else 1)

    def init_fn(key, input_shape):
        P, _ = model.init(key=key, m=m, d=U.shape[1], k=k, sigma=sigma, dtype=U.dtype, parametrization="ntk")
        return (input_shape[0], k), P

    def apply_fn(P, x, **kwargs):
        return jax.vmap(model.forward, in_axes=(None, None, 0))(P, frozen, x)

    fn = nt.monte_carlo_kernel_fn(init_fn, apply_fn, key, n_samples, trace_axes=(), vmap_axes=0,
                                  implementation=nt.NtkImplementation.JACOBIAN_CONTRACTION)
    return fn(U, None, "ntk"), init_fn


@pytest.mark.parametrize("name", ["exp-sign", "softmax-sign", "prefix"])
def test_monte_carlo_matches_nt(nt, name):
    k, m, sigma, n = k_of(name), M, 0.6, 16
    U = inputs(7, N1, D)
    _, frozen = T.init_model(name, key=jax.random.key(8), m=m, d=D, k=k, sigma=sigma)
    key = jax.random.key(9)
    H_nt, init_fn = _nt_mc(nt, name, frozen, U, key=key, m=m, sigma=sigma, n_samples=n)
    # 1. Draw for draw: nt 0.6.5 draws sample j with init key split(split_j)[0], where
    #    (key, split_j) = split(key) repeatedly; its mean equals the mean of our structured NTK.
    kk, draws = key, []
    for _ in range(n):
        kk, s = jax.random.split(kk)
        _, P = init_fn(jax.random.split(s)[0], U.shape)
        draws.append(T.structured_ntk(name, P, frozen, U, chunk_size=CHUNK))
    assert rel_err(H_nt, jnp.mean(jnp.stack(draws), 0)) < 1e-12
    # 2. theory.monte_carlo_kernel (its own draws) agrees with nt's within the sampling error.
    mc = T.monte_carlo_kernel(name, U, key=jax.random.key(10), m=m, sigma=sigma, k=k, n_samples=n,
                              fixed={f: getattr(frozen, f) for f in frozen.field_names()},
                              chunk_size=CHUNK)
    se = np.sqrt(2.0) * np.asarray(mc.stderr) + 1e-12 * float(jnp.max(jnp.abs(mc.mean)))
    z = np.abs(np.asarray(mc.mean - H_nt)) / se
    assert z.max() < 5, z.max()
    if name != "prefix":
        return
    # Negative control: nt's estimate at a different prefix scale is rejected by the same test.
    H_wrong, _ = _nt_mc(nt, name, frozen, U, key=key, m=m, sigma=1.6 * sigma, n_samples=n)
    assert (np.abs(np.asarray(mc.mean - H_wrong)) / se).max() > 5


# ----------------------------------------------------------------------------- kernel regression


def test_kernel_regression_matches_nt_predict(nt):
    name, k, n = "prefix", 2, N1
    P, frozen = T.init_model(name, key=jax.random.key(11), m=M, d=D, k=k)
    U = inputs(12, n, D)
    H = T.structured_ntk(name, P, frozen, U, chunk_size=CHUNK)
    H = (H + jnp.transpose(H, (1, 0, 3, 2))) / 2
    K = T.kernel_matrix(H)
    lam = np.linalg.eigvalsh(np.asarray(K))
    r0 = jax.random.normal(jax.random.key(13), (n, k))
    y = jnp.zeros((n, k))  # residual = output - target = output
    N = y.size  # nt's MSE loss is a mean over all N outputs: its flow is exp(-K lr t / N)

    # Exact: one step of our recursion with H' = I - expm(-c K) is nt's gradient flow at time c.
    c = 0.7 / lam[-1]
    Hp = np.eye(n * k) - scipy.linalg.expm(-c * np.asarray(K))
    ours = T.kernel_regression_residuals(Hp, r0, eta=1.0, steps=[0, 1])
    predict = nt.predict.gradient_descent_mse(H, y, learning_rate=N, trace_axes=())
    theirs = predict(jnp.asarray([0.0, c]), r0)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)

    # Discrete GD with a small step approaches nt's flow: |(1-x)^s - e^{-xs}| <= s x^2 / 2.
    eta, steps = 1e-3 / lam[-1], np.array([0, 300, 1000, 3000])
    ours = T.kernel_regression_residuals(H, r0, eta=eta, steps=steps)
    predict = nt.predict.gradient_descent_mse(H, y, learning_rate=eta * N, trace_axes=())
    theirs = predict(jnp.asarray(steps, float), r0)
    bound = steps.max() * (eta * lam[-1]) ** 2 / 2 * float(jnp.linalg.norm(r0))
    diff = float(jnp.max(jnp.linalg.norm((ours - theirs).reshape(len(steps), -1), axis=1)))
    moved = float(jnp.linalg.norm(ours[-1] - r0))
    assert diff <= bound and diff < 1e-3 * moved, (diff, bound, moved)
    # t = infinity: nt fits the targets exactly; so does our recursion after many steps.
    np.testing.assert_allclose(predict(None, r0), y)
    assert float(jnp.linalg.norm(T.kernel_regression_residuals(H, r0, eta=1 / lam[-1], steps=[10**7]))) < 1e-8
