# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 3. Linearised dynamics: a long prefix trains like kernel regression
#
# **Setting** (spec §2.1, claim 6; paper 1).  Full-batch gradient descent
# `P ← P − η ∇L`, `L = ½ Σ_i (f(P; x_i) − y_i)²`, on the `exp-sign` model (spec 2.A):
# `f(P; x) = m^{-1/2} Σ_r a_r exp(<p_r, u>)`, frozen signs `a_r`, prefix rows `p_r ~ N(0, σ² I)`.
#
# **Assumptions.** NTK scaling, a constant step `η` below `2/λ_max(H*)`, distinct inputs.
#
# **What is proved** (paper 1, the NTK regime): as m → ∞ the network's residuals `r(t) = F(t) − y`
# follow the kernel-regression (linearised) recursion with the limiting kernel,
#
#     r_lin(t + 1) = (I − η H*) r_lin(t),   i.e.   r_lin(t) = (I − η H*)^t r(0),
#
# uniformly in t, with a gap that closes at the rate `m^{-1/2}`.
#
# **What the spec reconstructs.** The closed form `H*_ij = <u_i,u_j> exp(σ² ||u_i + u_j||² / 2)`
# (derived in `theory/kernels/exp_sign.py`), the prediction `theory.kernel_regression_residuals`,
# and the measurable claim: `sup_t ||r(t) − r_lin(t)||` has log-log slope −1/2 in m (95% CI
# over seeds, with the experiments' tolerance for finite-m corrections).  Here the notebook
# trains the model itself with `theory` functions (no `sims` experiment), so the computation
# is visible end to end.  **Negative control:** the same trajectories compared with the
# prediction of a *wrong* kernel (H* at `σ/√2`, its exponent halved): that gap must not close.  **Cross-check:**
# neural-tangents' `predict.gradient_descent_mse` (gradient *flow*) reproduces the discrete
# recursion exactly when given the kernel `K' = −log(I − η H*)`, since `exp(−t K') = (I − η H*)^t`.

# %%
import functools
import os

import jax

import sims

RUN_CONTEXT = sims.context(precision="float64")  # float64 from here on (sims.runtime); theory sets nothing
RUN_CONTEXT.__enter__()

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import theory as T
from theory.stats import fit_loglog_slope

FULL = os.environ.get("PREFIX_NTK_FULL", "") not in ("", "0")
try:
    from sims.core.verdicts import SLOPE_TOL  # the experiments' allowance for finite-m corrections
except ImportError:
    SLOPE_TOL = 0.05
n, d, sigma, input_norm = 6, 8, 1.0, 1.0
if FULL:
    ms, steps, seeds = (1_000, 4_000, 16_000, 64_000, 256_000), 200, 8
else:
    ms, steps, seeds = (250, 1_000, 4_000), 60, 4
print("size:", "full" if FULL else "small", "| m:", ms, "| steps:", steps, "| seeds:", seeds)

# %% [markdown]
# ## Data, limit kernel and step size

# %%
kU, ky = jax.random.split(jax.random.key(0))
U = T.sphere_inputs(key=kU, n=n, d=d, radius=input_norm)
y = jax.random.normal(ky, (n, 1))
H_star = T.limit_kernel("exp-sign", U, sigma=sigma)
H_wrong = T.limit_kernel("exp-sign", U, sigma=float(sigma / np.sqrt(2)))  # negative control: exponent halved
eta = T.default_learning_rate(H_star)  # 0.5 / lambda_max(H*)
lam = T.lambda_min(H_star).value
print(f"lambda_min(H*) = {float(lam):.4f}, eta = {eta:.4f}")

# %% [markdown]
# ## Train the finite-m model (seeds in parallel with `vmap`)

# %%
model = T.get_model("exp-sign")


@functools.partial(jax.jit, static_argnames=("m", "steps"))
def train(keys, U, y, eta, *, m, steps):
    def one(key):
        P0, frozen = model.init(key=key, m=m, d=U.shape[1], k=1, sigma=sigma, dtype=U.dtype)

        def outputs(P):
            return jax.vmap(model.forward, in_axes=(None, None, 0))(P, frozen, U)  # (n, 1)

        def step(P, _):
            F, pullback = jax.vjp(outputs, P)
            (grad,) = pullback(F - y)  # gradient of 1/2 sum (F - y)^2
            return P - eta * grad, F

        P, Fs = jax.lax.scan(step, P0, None, length=steps)
        return jnp.concatenate([Fs, outputs(P)[None]])  # (steps + 1, n, 1)

    return jax.vmap(one)(keys)


t = np.arange(steps + 1)
gap, gap_wrong, trajectories = {}, {}, {}
for m in ms:
    F = np.asarray(train(jax.random.split(jax.random.key(m), seeds), U, y, eta, m=m, steps=steps))
    r = F - np.asarray(y)[None, None]
    gap[m], gap_wrong[m] = [], []
    for s in range(seeds):
        r_lin = np.asarray(T.kernel_regression_residuals(H_star, r[s, 0], eta=eta, steps=t))
        r_bad = np.asarray(T.kernel_regression_residuals(H_wrong, r[s, 0], eta=eta, steps=t))
        gap[m].append(np.linalg.norm(r[s] - r_lin, axis=(1, 2)).max())
        gap_wrong[m].append(np.linalg.norm(r[s] - r_bad, axis=(1, 2)).max())
    trajectories[m] = (F[0, :, 0, 0], np.asarray(y)[0, 0] + np.asarray(
        T.kernel_regression_residuals(H_star, r[0, 0], eta=eta, steps=t))[:, 0, 0])
    print(f"m = {m:>7,}: sup_t ||r - r_lin|| = {np.mean(gap[m]):.3e} (wrong kernel: {np.mean(gap_wrong[m]):.3e})")

fit = fit_loglog_slope(ms, [gap[m] for m in ms])
fit_wrong = fit_loglog_slope(ms, [gap_wrong[m] for m in ms])
print(f"slope {fit.slope:.3f} [{fit.low:.3f}, {fit.high:.3f}]  (predicted -0.5 +- {SLOPE_TOL})")
print(f"control slope {fit_wrong.slope:.3f} [{fit_wrong.low:.3f}, {fit_wrong.high:.3f}]  (must miss -0.5)")

# %% [markdown]
# ## Figure: one output's trajectory, and the gap against m

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
for i, m in enumerate((ms[0], ms[-1])):
    f_net, f_lin = trajectories[m]
    ax1.plot(t, f_net, color=f"C{i}", label=f"network, m = {m:,}")
    ax1.plot(t, f_lin, "--", color=f"C{i}", label="kernel regression (same r(0))")
ax1.axhline(float(y[0, 0]), color="grey", lw=0.8, label="target y_0")
ax1.set(xlabel="step t", ylabel="f(x_0)", title="output of input 0 along training (seed 0)")
ax1.legend(fontsize=7)
x = np.array(ms, float)
G, W = np.array([gap[m] for m in ms]), np.array([gap_wrong[m] for m in ms])
ax2.plot(x, np.exp(np.log(G).mean(1)), "o-", label=f"H*: slope {fit.slope:.2f} [{fit.low:.2f}, {fit.high:.2f}]")
ax2.fill_between(x, G.min(1), G.max(1), alpha=0.2)
ax2.plot(x, np.exp(np.log(W).mean(1)), "o:", color="grey", mfc="white",
         label=rf"control, wrong kernel ($\sigma/\sqrt{{2}}$): slope {fit_wrong.slope:.2f}")
g0 = np.exp(np.log(G[0]).mean())
ax2.plot(x, g0 * (x / x[0]) ** -0.5, "k--", label="predicted slope −1/2")
ax2.set(xscale="log", yscale="log", xlabel="prefix length m", ylabel=r"$\sup_t \|r(t) - r_{lin}(t)\|$",
        title="distance to kernel regression")
ax2.legend(fontsize=7)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Cross-check with neural-tangents (skipped when it cannot be imported)
#
# `nt.predict.gradient_descent_mse` integrates the gradient flow of nt's *mean* squared error,
# `r(t) = exp(−t K lr / N) r(0)` with N outputs.  With `K' = −log(I − η H*)` and `lr = N`, its
# flow at integer times equals our discrete recursion `(I − η H*)^t r(0)` (η λ_max = 1/2 < 1,
# so the logarithm exists).

# %%
nt_diff = None
try:
    from sims.bench.ntcompat import import_neural_tangents

    nt = import_neural_tangents()
except ImportError as e:
    print("neural-tangents not available, cross-check skipped:", e)
else:
    K = np.asarray(T.kernel_matrix(H_star))
    ev, Q = np.linalg.eigh((K + K.T) / 2)
    K_flow = (Q * -np.log1p(-eta * ev)) @ Q.T
    r0 = np.asarray(jax.random.normal(jax.random.key(7), (n, 1)))
    predict = nt.predict.gradient_descent_mse(jnp.asarray(K_flow).reshape(n, 1, n, 1).transpose(0, 2, 1, 3),
                                              jnp.zeros((n, 1)), learning_rate=float(n), trace_axes=())
    theirs = np.asarray(predict(jnp.asarray(t[:: max(1, steps // 10)], float), jnp.asarray(r0)))
    ours = np.asarray(T.kernel_regression_residuals(H_star, r0, eta=eta, steps=t[:: max(1, steps // 10)]))
    nt_diff = float(np.max(np.abs(theirs - ours)))
    print(f"max |nt flow - (I - eta H*)^t r0| = {nt_diff:.2e}")

# %% [markdown]
# ## Verdict
#
# The claim held at the sizes used when the slope's 95% interval meets `−1/2 ± tol` (the
# experiments' rule, `sims.core.verdicts.SLOPE_TOL`), the wrong-kernel control misses it, the gap
# shrinks from the smallest to the largest m, and (when available) neural-tangents agrees
# with the recursion to rounding.

# %%
meets = lambda f: f.low <= -0.5 + SLOPE_TOL and f.high >= -0.5 - SLOPE_TOL  # noqa: E731
assert meets(fit), fit
assert not meets(fit_wrong), fit_wrong
assert np.mean(gap[ms[-1]]) < np.mean(gap[ms[0]])
assert nt_diff is None or nt_diff < 1e-8, nt_diff
print("claim held: finite-m gradient descent approaches kernel regression with H* at rate m^-1/2")
