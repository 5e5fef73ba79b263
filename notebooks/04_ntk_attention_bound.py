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
# # 4. NTK-Attention: an infinitely long prefix in `r d + r` numbers, and its error bound
#
# **Setting** (spec §4; paper 1, Liang et al.).  Prefix attention with a prefix `P` of m rows,
# `PrefixAttn(X, P) = diag(A 1)^{-1} A V` over the m prefix rows and the L input tokens.
# NTK-Attention replaces the prefix block by a feature map `φ` with
# `exp(<q,k>/sqrt(d)) ≈ <φ(q), φ(k)>` and the two summaries `Z = Σ_r φ(k_r) v_r^T`,
# `k = Σ_r φ(k_r)`, so the cost no longer depends on m:
#
#     NTKAttn(X) = diag(A_X 1 + φ(Q) k)^{-1} (A_X V_X + φ(Q) Z).
#
# **Assumptions.** Degree-g Taylor features (`<φ(q),φ(k)> = Σ_{j≤g} <q,k>^j/(j! d^{j/2})`),
# exact summaries of the prefix, and bounded prefix logits `|z| ≤ β`, `z = <q,k_r>/sqrt(d)`.
#
# **What is proved** (paper 1): NTK-Attention approximates the infinite-long prefix with a
# polynomially small error: for bounded logits a degree `g = O(log m / log log m)` gives
# error `≤ m^{-c}`.
#
# **What the spec reconstructs, and the project derives** (`docs/ntk_attention_bound.md`):
# each prefix weight has relative error at most `ε_g = β^{g+1} e^{β}/(g+1)!` (the spec's
# `e^{2β}` is true but loose by `e^β`), and for `ε_g < 1`
#
#     ||NTKAttn(X) − PrefixAttn(X, P)||_∞ ≤ ε_g/(1 − ε_g) · max_r ||v_r − o||_∞
#
# (refined: `ε π/(1 − ε π)` with `π` the prefix's share of the attention mass; the exact input
# block only helps).  Checked here: the bound holds on every query row and degree, over random
# and adversarial inputs (where it is nearly attained), the error falls with g, and the degree
# `g*` the bound asks for reaches `m^{-c}`.  **Negative control:** the same bound without its
# `e^β` factor, which must be violated somewhere.

# %%
import math
import os
from pathlib import Path

import jax

import sims

RUN_CONTEXT = sims.context(precision="float64")  # float64 from here on (sims.runtime); theory sets nothing
RUN_CONTEXT.__enter__()

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import sims.core as engine
from sims.core.verdicts import measured_text, predicted_text
from sims.experiments import get
from theory.ntk_attn.feature_maps import taylor_dim
from theory.ntk_attn.ntk_attention import Summary, ntk_attention, prefix_summary
from theory.ntk_attn.bounds import degree_needed, instance_output_bound, scale_to_logit_bound
from theory.prefix_attention import prefix_attention

FULL = os.environ.get("PREFIX_NTK_FULL", "") not in ("", "0")
RESULTS = Path(os.environ.get("PREFIX_NTK_RESULTS", "results"))
print("size:", "full" if FULL else "small", "| results folder:", RESULTS)

# %% [markdown]
# ## One instance by hand: error and bound for each degree

# %%
d, L, beta, c = 4, 8, 2.0, 0.5
m = 2**16 if FULL else 4096
kx, kp, kw = jax.random.split(jax.random.key(0), 3)
W_Q, W_K, W_V = (jax.random.normal(k, (d, d)) / math.sqrt(d) for k in jax.random.split(kw, 3))
X, P = scale_to_logit_bound(jax.random.normal(kx, (L, d)), jax.random.normal(kp, (m, d)), W_Q, W_K, beta=beta)
exact = prefix_attention(X, P, W_Q, W_K, W_V)
V_inf = float(jnp.max(jnp.abs(jnp.concatenate([P @ W_V, X @ W_V]))))
g_star = degree_needed(m, c=c, beta=beta, spread=2 * V_inf)
degrees = list(range(0, max(8, g_star) + 1))
S = prefix_summary(P, W_K, W_V, feature="taylor", g=degrees[-1])  # features are ordered by degree: slice
errors, bounds = [], []
for g in degrees:
    r = taylor_dim(d, g)
    out = ntk_attention(X, Summary(S.Z[:r], S.k[:r]), W_Q, W_K, W_V, feature="taylor", g=g,
                        on_precision_loss="ignore")  # measured against exact attention below
    errors.append(float(jnp.max(jnp.abs(out - exact))))
    bounds.append(float(np.max(instance_output_bound(X, P, W_Q, W_K, W_V, g=g))))
    print(f"g = {g:2d} (r = {r:4d}): error {errors[-1]:.3e}   bound {bounds[-1]:.3e}")
print(f"m = {m}, beta = {beta}: the bound asks for g* = {g_star} to reach m^-{c} = {m ** -c:.3e}; "
      f"error there {errors[g_star]:.3e}")

# %% [markdown]
# ## The `ntk-attention-error` experiment: every m, β, pattern and seed

# %%
exp = get("ntk-attention-error")
config = exp.config() if FULL else exp.config(m=(16, 256), beta=(1.0, 2.0), L=4, g_max=6, seeds=2)
result = engine.run(exp, config, out=RESULTS, precision="float64")
for row in result.rows:
    print(f"[{row.status.upper()}] {row.id} {row.claim}: predicted {predicted_text(row)}; measured {measured_text(row)}")

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
ax1.semilogy(degrees, errors, "o-", label="measured error")
ax1.semilogy(degrees, np.where(np.isfinite(bounds), bounds, np.nan), "k--",
             label=r"bound $\varepsilon_g/(1-\varepsilon_g)\,s$")
ax1.axhline(m ** -c, color="grey", ls=":", label=f"target $m^{{-{c}}}$")
ax1.axvline(g_star, color="grey", lw=0.8)
ax1.set(xlabel="Taylor degree g", ylabel=r"$\|$NTKAttn $-$ PrefixAttn$\|_\infty$",
        title=rf"one instance: m = {m:,}, $\beta$ = {beta}, g* = {g_star}")
ax1.legend(fontsize=7)
for pattern, marker in (("random", "o"), ("adversarial", "s")):
    e = np.concatenate([a["err_rows"].ravel() for cc, a in result.results if cc["pattern"] == pattern])
    b = np.concatenate([a["bound_refined"].ravel() for cc, a in result.results if cc["pattern"] == pattern])
    ok = np.isfinite(b) & (e > 0)
    ax2.loglog(b[ok], e[ok], marker, ms=3, ls="none", alpha=0.6, label=f"{pattern} (refined bound)")
e = np.concatenate([a["err_rows"].ravel() for _, a in result.results])
w = np.concatenate([a["bound_wrong"].ravel() for _, a in result.results])
ok = np.isfinite(w) & (e > 0) & (w > 0) & (w < 1e3)
ax2.loglog(w[ok], e[ok], "x", color="grey", ms=3, ls="none", label=r"control: bound without $e^\beta$")
lim = np.array([e[e > 0].min(), max(e.max(), w[ok].max() if ok.any() else e.max())])
ax2.loglog(lim, lim, "k--", lw=0.8, label="error = bound")
ax2.set(xlabel="bound (per query row and degree)", ylabel="measured error", title="every (row, degree) pair")
ax2.legend(fontsize=7)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Verdict
#
# The claim held at the sizes used when the bound holds for every degree of the hand-made
# instance, the degree `g*` reaches `m^{-c}`, and every row of the experiment's verdict passes
# (bounds never violated, tightness on adversarial inputs, the control violated, `m^{-c}`
# reached at `g*`, error decreasing in g).

# %%
assert all(e <= b * (1 + 1e-9) + 1e-12 for e, b in zip(errors, bounds) if np.isfinite(b)), (errors, bounds)
assert errors[g_star] <= m ** -c
assert result.passed, [r for r in result.rows if not r.passed]
print("claim held: NTK-Attention's error obeys the derived bound and is polynomially small at degree g*")
