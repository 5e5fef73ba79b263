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
# # 1. The kernel limit of a long prefix, and how fast it concentrates
#
# **Setting** (spec §2; paper 1, Liang et al., *Towards Infinite-Long Prefix in Transformer*).
# One query token `x`, frozen weights folded into `u = W x` with `W = W_K W_Q^T / sqrt(d)`, so
# that a prefix row's logit is `<p_r, u>`.  The prefix `P` (m rows, the "width") is the only
# trainable parameter; its rows start i.i.d. `N(0, σ² I_d)`.  The empirical NTK is
# `H(P)[(i,l),(j,l')] = Σ_r <∂F_l(x_i)/∂p_r, ∂F_l'(x_j)/∂p_r>`.
#
# **Assumptions.** Gaussian initialisation of the prefix; the three stylized models of the spec,
# scaled so that the output at initialisation is O(1) and the kernel has an m-independent limit:
# `exp-sign` (unnormalised exponential attention, frozen ±1 values), `softmax-sign` (softmax
# over the prefix, frozen ±1 values) and `prefix` (tied prefix attention: the rows are keys
# and values, which is prefix learning itself).  Inputs are distinct and non-degenerate.
#
# **What is proved** (paper 1, in the NTK analysis of ultra-long prefixes): as m → ∞ the kernel
# at initialisation converges to a deterministic, positive-definite limit `H*`, at the rate
# `m^{-1/2}` of a mean of m i.i.d. terms, so that once m is large `λ_min(H(0)) ≥ λ/2` with
# `λ = λ_min(H*)` and high probability.
#
# **What the spec reconstructs.** The papers' full bodies were not available, so the closed
# forms are the spec's own derivations (re-derived in `theory/`):
#
# - `exp-sign`: `H*_ij = <u_i,u_j> exp(σ² ||u_i + u_j||² / 2)`, with the *exact* finite-m
#   fluctuation `E ||H(0) − H*||_F² = C/m` with
#   `C = Σ_ij <u_i,u_j>² (e^{2σ²||u_i+u_j||²} − e^{σ²||u_i+u_j||²})`;
# - `softmax-sign`: `H*[(i,l),(j,l')] = δ_{ll'} <u_i,u_j> exp(σ² <u_i,u_j>)`;
# - `prefix`: `H*_ij = e^{σ²c} V [(1 + σ²c) I + σ²(2 + σ²c) u_j u_i^T] V^T`, `c = <u_i,u_j>`.
#
# This notebook checks (i) each closed form against a Monte-Carlo average of the empirical NTK,
# and (ii) with the `kernel` experiment, that `||H(0) − H*||` decays with slope −1/2 in m
# (95% CI over seeds), that `m ||H(0) − H*||_F²` averages to the exact C for `exp-sign`, that
# `λ_min(H(0)) ≥ λ/2` at the largest m, and that a deliberately wrong limit (H* at `√2 σ`) is
# *not* approached (negative control).

# %%
import os
from pathlib import Path

import jax

import sims

RUN_CONTEXT = sims.context(precision="float64")  # float64 from here on (sims.runtime); theory sets nothing
RUN_CONTEXT.__enter__()

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import theory as T
import sims.core as engine
from sims.core.verdicts import measured_text, predicted_text
from sims.experiments import get
from theory.kernels import prefix
from theory.kernels.prefix import readout
from theory.stats import fit_loglog_slope

# Size switch: small by default (seconds); PREFIX_NTK_FULL=1 selects the larger setting.
FULL = os.environ.get("PREFIX_NTK_FULL", "") not in ("", "0")
RESULTS = Path(os.environ.get("PREFIX_NTK_RESULTS", "results"))  # where sims.core.run stores cells
print("size:", "full" if FULL else "small", "| results folder:", RESULTS)

# %% [markdown]
# ## (i) The closed-form limits against Monte Carlo
#
# `theory.monte_carlo_kernel` averages the structured empirical NTK over independent prefixes
# at a finite m.  Its mean differs from `H*` by the O(1/sqrt(m)) fluctuation, which its
# standard error measures; we require `||mean − H*||_F` within 4 aggregate standard errors
# `sqrt(Σ se²)` (the expected value of the ratio is about 1).

# %%
n, d, k, sigma = 4, 5, 2, 0.7
m_mc, draws = (200_000, 32) if FULL else (2_000, 12)
U = T.sphere_inputs(key=jax.random.key(0), n=n, d=d, radius=0.5)  # |u| = 0.5
V = readout(key=jax.random.key(1), d=d, k=k)

mc_rows = []
for name in T.model_names():  # every registered model
    kk = T.get_model(name).fixed_k or k
    fixed = {"V": V} if name == prefix.MODEL.name else {}
    _, frozen = T.init_model(name, key=jax.random.key(1), m=1, d=d, k=kk)  # H* reads V (prefix) or k only
    frozen = frozen.replace(**fixed)
    H_star = T.limit_kernel(name, U, sigma=sigma, frozen=frozen)
    mc = T.monte_carlo_kernel(name, U, key=jax.random.key(2), m=m_mc, sigma=sigma, k=kk, n_samples=draws,
                              fixed=fixed)
    dist = float(jnp.linalg.norm(mc.mean - H_star))
    se = float(jnp.sqrt(jnp.sum(mc.stderr**2)))
    mc_rows.append((name, float(jnp.linalg.norm(H_star)), dist, se, dist / se))
    print(f"{name:13s} ||H*|| = {mc_rows[-1][1]:.4f}   ||MC mean - H*|| = {dist:.2e}   "
          f"aggregate s.e. = {se:.2e}   ratio = {dist / se:.2f}")

# %% [markdown]
# ## (ii) Concentration at initialisation: the `kernel` experiment
#
# `sims.core.engine.run` computes every (model, m, seed) cell, stores it under the results folder
# (finished cells are reused on a rerun) and judges each claim.

# %%
exp = get("kernel")
config = exp.config() if FULL else exp.config(m=(500, 2000, 8000), n=5, d=6, seeds=4)
result = engine.run(exp, config, out=RESULTS, precision="float64")
for row in result.rows:
    print(f"[{row.status.upper()}] {row.id} {row.claim}: predicted {predicted_text(row)}; measured {measured_text(row)}")


# %%
def by_m(model, value):
    res = [(c, a) for c, a in result.results if c["model"] == model]
    ms = sorted({c["m"] for c, _ in res})
    return np.array(ms, float), np.array([[value(a) for c, a in res if c["m"] == m] for m in ms])


fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
for i, model in enumerate(config.model):
    color = f"C{i}"
    ms, err = by_m(model, lambda a: float(a["err"] / a["H_star_norm"]))
    _, wrong = by_m(model, lambda a: float(a["err_wrong"] / a["H_star_norm"]))
    fit = fit_loglog_slope(ms, err)
    gm = np.exp(np.log(err).mean(1))
    ax1.plot(ms, gm, "o-", color=color, label=f"{model}: slope {fit.slope:.2f} [{fit.low:.2f}, {fit.high:.2f}]")
    ax1.fill_between(ms, err.min(1), err.max(1), color=color, alpha=0.2)
    ax1.plot(ms, np.exp(np.log(wrong).mean(1)), "o:", color="grey", mfc="white")
    a0 = next(a for c, a in result.results if c["model"] == model)
    if "C_exact" in a0:  # a model with an exact constant (exp-sign)
        ax1.plot(ms, np.sqrt(float(a0["C_exact"]) / ms) / float(a0["H_star_norm"]), "k--",
                 label=model + r" exact $\sqrt{C/m}$")
    _, lam = by_m(model, lambda a: float(a["lambda_min_H0"] / a["lambda_star"]))
    ax2.plot(ms, lam.mean(1), "o-", color=color, label=model)
    ax2.fill_between(ms, lam.min(1), lam.max(1), color=color, alpha=0.2)
ax1.plot([], [], "o:", color="grey", mfc="white", label=r"control: wrong $H^*$ ($\sqrt{2}\sigma$)")
ax1.set(xscale="log", yscale="log", xlabel="prefix length m", ylabel=r"$\|H(0)-H^*\|_F / \|H^*\|_F$",
        title="concentration (band: min-max over seeds)")
ax1.legend(fontsize=7)
ax2.axhline(1, color="k", ls="--", lw=0.8)
ax2.axhline(0.5, color="grey", ls=":", label=r"$\lambda/2$ (claim 2)")
ax2.set(xscale="log", ylim=(0, None), xlabel="prefix length m", ylabel=r"$\lambda_{\min}(H(0))/\lambda_{\min}(H^*)$",
        title="smallest eigenvalue")
ax2.legend(fontsize=7)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Verdict
#
# The claim holds at the sizes used when every Monte-Carlo mean sits within 4 standard errors
# of its closed form and no row of the `kernel` verdict fails: a slope passes when its 95%
# interval lies inside −1/2 ± 0.1, the exact `exp-sign` constant when the mean's 95% interval
# lies inside C ± 20%, `λ_min(H(0)) ≥ λ/2` on every seed, and the wrong limit is not approached
# (`docs/verdicts.md`).  At this small size (4 seeds) several rows are undecided, never failed.

# %%
assert all(ratio < 4 for *_, ratio in mc_rows), mc_rows
assert result.passed, [r for r in result.rows if not r.passed]
print("no claim failed: lambda_min(H(0)) >= lambda/2 holds and the wrong limit is caught; rate and constant "
      "rows the equivalence rule cannot decide at this size say so above")
