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
# # 6. Shared against non-shared prompts: why reparameterisation makes prompts identifiable
#
# **Setting** (spec §5; paper 2, Le et al., *Revisiting Prefix-tuning: Statistical Benefits of
# Reparameterization among Prompts*, ICLR 2025).  One attention row with N frozen input tokens
# and L prefix key/value pairs is a softmax-gated mixture of experts: N frozen "pre-trained"
# experts and L "prefix experts" `C p^V_j` with gates `exp((B p^K_j)^T X + b_j)`
# (`theory.moe.model`, derived in `docs/reparam_model.md`).  Data `Y = f_{G*}(X) + ε`, `X` uniform
# on a box, Gaussian noise; the estimator is least squares over `L ≥ L*` prompts.
#
# **Assumptions.** Non-shared prompts have `p^K, p^V` free; shared (reparameterised) prompts come
# from one embedding `p'`: `p^K = W1 p'`, `p^V = W2 p'` (linear), `tanh` of those (one layer), or
# `p^K = p^V = p` (prompt-tuning).  The interesting case is the *over-specified* fit (L = L* + 1),
# where two fitted atoms share one true atom's Voronoi cell.
#
# **What is proved** (paper 2): shared prompts are estimated at the parametric rate
# (`D = O_P(sqrt(log n / n))`: singleton atoms at `n^{-1/2}`, merged atoms at `n^{-1/4}`), while
# non-shared over-specified prompts have no polynomial rate.  Both rest on an *inverse bound*:
# `||f_G − f_{G*}||_{L2} ≥ c · D(G, G*)` near `G*` for shared prompts, which fails for non-shared ones.
#
# **What is reconstructed here** (experiment `reparam-identifiability`, on the fixed problem of
# `sims run reparam`): (1) the inverse bound itself — the *identifiability modulus*
# `||f_G − f*|| / D(G, G*)` over over-specified configurations, binned by the merged cell's
# location error, *minimised* locally from the search's best configurations on a stated set
# (weight share of the split pair in [0.05, 0.95], location error in the bin); (2) the
# least-favourable *two-point* pair, whose best test has power exactly
# `Φ(sqrt(n)·||f1 − f0|| / σ − z)`: with the exponent of `||f1 − f0||` in the separation it is the
# modulus restated, shown for the statistical reading and not counted as evidence.  The small
# setting polishes 2 starts per structure; `PREFIX_NTK_FULL=1` polishes 6.

# %%
import os
from pathlib import Path

import sims

RUN_CONTEXT = sims.context(precision="float64")  # float64 from here on (sims.runtime); theory sets nothing
RUN_CONTEXT.__enter__()

import matplotlib.pyplot as plt
import numpy as np

import sims.core as engine
from sims.experiments import get
from sims.experiments.reparam_identifiability import CASES
from sims.experiments.reparam_identifiability_verdict import approach_curve, modulus_curve, power_curve

FULL = os.environ.get("PREFIX_NTK_FULL", "") not in ("", "0")
RESULTS = Path(os.environ.get("PREFIX_NTK_RESULTS", "results"))
print("size:", "full" if FULL else "small", "| results folder:", RESULTS)

# %%
exp = get("reparam-identifiability")
if FULL:  # 6 polished starts per structure; two-point n = 1e3 .. 1e5 (5 points)
    config = exp.config()
else:
    config = exp.config(quick=True)
result = engine.run(exp, config, out=RESULTS, precision="float64")
for row in result.rows:
    print(f"[{row.status.upper()}] {row.id} {row.claim}: {row.quantity} = {row.estimate:.4g} "
          f"({row.relation} {row.target:g}{f' +- {row.tol:g}' if row.tol else ''}); {row.detail}")

# %% [markdown]
# ## 1. The identifiability modulus
#
# For each structure: true atom 0 or 1 split in two (directions on a grid, equal weights) plus
# random over-specified configurations (unequal weights, the other atom and the biases moved), at
# location errors `ρ` from 1e-4 to 0.03; per half-decade bin the smallest ratio sampled (open
# markers) and the smallest after local minimisation (filled; the verdict decides on these, about
# ten times lower).  Shared structures: bounded below and flat on the set (the inverse bound).
# Non-shared: 0 to rounding in every bin,
# because two atoms with equal keys and values `v* ± t e` give exactly `f*`; the broken sharing
# (`W1 e_2 = 0`, keys blind to one coordinate of `p'`) behaves like the non-shared structure.

# %%
names = {"shared_linear": "shared linear", "shared_tanh": "shared tanh", "prompt": "prompt", "nonshared": "non-shared"}
floor = 1e-4
fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
for i, (s, variant) in enumerate([("shared_linear", "standard"), ("shared_tanh", "standard"), ("prompt", "standard"),
                                  ("nonshared", "standard"), ("shared_linear", "broken")]):
    mc = modulus_curve(result.results, s, variant)
    label = "control: broken sharing" if variant == "broken" else names[s]
    tag = f"min. {np.nanmin(mc['best']):.2g}, slope {mc['slope']:.2f}" if mc["slope"] is not None else "0 to rounding"
    a.plot(mc["rho"], np.where(mc["zero"], floor, mc["minimum"]), "o:" if variant == "standard" else "v:",
           color=f"C{i}", markerfacecolor="white")
    a.plot(mc["rho"], np.where(mc["zero"], floor, np.maximum(mc["best"], floor)), "o-" if variant == "standard" else "v:",
           color=f"C{i}", label=f"{label}: {tag}")
a.axhline(floor, color="k", lw=0.6, ls="--")
a.set(xscale="log", yscale="log", ylim=(floor / 3, 1), xlabel="location error ρ of the merged cell",
      ylabel="min ||f_G − f*|| / D(G, G*)", title="(a) modulus: minimised (filled), sampled (open)")
a.legend(fontsize=7)
ap = approach_curve(result.results)
b.plot(ap["eps"], ap["ratio"], "D-", color="C3", label=f"non-shared: slope {ap['slope']:.2f}")
b.plot(ap["eps"], ap["ratio"][-1] * ap["eps"] / ap["eps"][-1], "k--", lw=0.8, label="slope 1")
b.set(xscale="log", yscale="log", xlabel="key half-separation (values 0.1 apart)", ylabel="modulus",
      title="(b) non-shared: approaching equal keys")
b.legend(fontsize=7)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 2. The least-favourable two-point pair (the modulus restated)
#
# `G0 = G*` against `G1` = atom 0 split into a pair, scaled with n: non-shared keys `∝ n^{-1/2}`
# apart with values a fixed 1.0 apart; shared `p'` separation `∝ n^{-1/4}`.  The separation at the
# smallest n gives the signal `Δ = sqrt(n)·||f1 − f0|| / σ = 2`.  The best test's power is exactly
# `Φ(Δ − z)`, computed, not simulated (a test checks the formula against a simulation once).  It
# depends on the pair only through `||f1 − f0|| ~ h^k`: k = 1 for the non-shared keys, 2 for the
# shared pairs (legend), so "flat power" restates those exponents, i.e. the modulus of section 1.
# What it adds is the reading: a non-shared pair at Voronoi distance O(1) is never told apart, a
# shared one only while its separation shrinks like `n^{-1/4}`.  No verdict row comes from it.

# %%
fig, ax = plt.subplots(figsize=(6, 3.8))
for i, (s, scaling, control) in enumerate(CASES):
    pc = power_curve(result.results, s, scaling)
    ax.plot(pc["n"], pc["power"], "o:" if control else "o-", color="0.5" if control else f"C{i}",
            label=f"{'control: ' if control else ''}{names[s]}, {scaling}: k = {pc['exponent']:.2f}")
ax.set(xscale="log", ylim=(0, 1.05), xlabel="sample size n", ylabel="exact power of the best test",
       title="two-point pair: Φ(sqrt(n)||f1 − f0||/σ − z)")
ax.legend(fontsize=7)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Verdict
#
# The claim holds when every modulus row passes: the shared minimised modulus above the floor and
# flat on the set, non-shared 0 on the equal-key manifold and decaying like the key separation,
# and the controls caught (the minimiser reaches 0 on the non-shared structure and the broken
# sharing; shared_linear has no exact zero).  The two-point pair adds no rows.

# %%
assert result.rows and all(r.status == "pass" for r in result.rows), [r for r in result.rows if r.status != "pass"]
print("claim held: shared prompts are identifiable (minimised modulus bounded below on the set), non-shared are not;",
      len(result.rows), "rows")
