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
# # 6. Shared against non-shared prompts: the sample efficiency of reparameterisation
#
# **Setting** (spec §5; paper 2, Le et al., *Revisiting Prefix-tuning: Statistical Benefits of
# Reparameterization among Prompts*, ICLR 2025).  One attention row with N frozen input tokens
# and L prefix key/value pairs is a softmax-gated mixture of experts: N frozen "pre-trained"
# experts and L "prefix experts" `C p^V_j` with gates `exp((B p^K_j)^T X + b_j)`
# (`theory.moe.model`, derived in `docs/reparam_model.md`).  Data `Y = f_{G*}(X) + ε` with `X`
# uniform on a box and Gaussian noise; the estimator is least squares over `L ≥ L*` prompts.
#
# **Assumptions.** Non-shared prompts have `p^K, p^V` free; shared (reparameterised) prompts
# come from one embedding `p'`: `p^K = W1 p'`, `p^V = W2 p'` (linear) or `tanh` of those (one
# layer).  The interesting case is the *over-specified* fit (L = L* + 1), where atoms of the
# fitted mixing measure can merge onto one true atom.  Losses are Voronoi losses between fitted
# and true atoms (`theory.moe.voronoi`).
#
# **What is proved** (paper 2): with shared prompts the Voronoi loss converges at the
# parametric rate `O_P(sqrt(log n / n))` (log-log slope ≈ −1/2 for singleton cells, ≈ −1/4 for
# merged cells); with non-shared prompts in the over-specified case no polynomial rate holds
# (the slope flattens toward 0).  The regression function itself is learned at ≈ `n^{-1/2}`
# in both cases.
#
# **What the spec reconstructs.** A self-contained MoE in the paper's spirit (fixed small
# problem, `sims/experiments/reparam.py`), float64 least squares with restarts, slopes with
# confidence intervals over replications.  A finite grid cannot show "no polynomial rate"
# itself; the experiment checks the flattening (the non-shared slope's interval lies above
# −1/4, the slowest rate the shared structures attain).  The full protocol is n from 10^3 to
# 10^5 with 20 replications; the small setting below only illustrates it.

# %%
import os
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)  # theory never flips global JAX settings; callers do

import matplotlib.pyplot as plt
import numpy as np

from sims.core import runner
from sims.core.experiment import get
from theory.stats import fit_loglog_slope

FULL = os.environ.get("PREFIX_NTK_FULL", "") not in ("", "0")
RESULTS = Path(os.environ.get("PREFIX_NTK_RESULTS", "results"))
print("size:", "full" if FULL else "small", "| results folder:", RESULTS)

# %%
exp = get("reparam")
if FULL:  # the spec's protocol: every structure, n = 1e3 .. 1e5, 20 replications, 4 restarts
    config = exp.config()
else:
    config = exp.config(structures=("shared_linear", "nonshared"), extra=(1,), n=(300, 1000, 3000),
                        replications=4, restarts=1)
result = runner.run(exp, config, out=RESULTS, precision="float64", progress=False)
for row in result.rows:
    print(f"[{'PASS' if row.passed else 'FAIL'}] {row.claim}: predicted {row.predicted}; measured {row.measured}")

# %%
L_star = int(result.results[0][0]["L_star"])
panels = (("voronoi", "Voronoi loss", True), ("merged_error", "merged-cell parameter error", True),
          ("l2_error", r"$\|\hat f - f^*\|_{L^2}$", False))
fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
for ax, (metric, label, over_only) in zip(axes, panels):
    for i, s in enumerate(config.structures):
        for L in sorted({c["L"] for c, _ in result.results if c["structure"] == s}):
            if over_only and L <= L_star:
                continue
            rows = [(c, a) for c, a in result.results if c["structure"] == s and c["L"] == L]
            ns = sorted({c["n"] for c, _ in rows})
            Y = np.array([[float(a[metric]) for c, a in rows if c["n"] == n] for n in ns])
            keep = np.all(np.isfinite(Y) & (Y > 0), axis=0)
            if len(ns) < 2 or not keep.any():
                continue
            Y = Y[:, keep]
            fit = fit_loglog_slope(ns, Y)
            ax.plot(ns, np.exp(np.log(Y).mean(1)), "o-" if L > L_star else "o--", color=f"C{i}",
                    label=f"{s}, L={L}: slope {fit.slope:.2f} [{fit.low:.2f}, {fit.high:.2f}]")
            ax.fill_between(ns, Y.min(1), Y.max(1), color=f"C{i}", alpha=0.15)
    ns = np.array(sorted({c["n"] for c, _ in result.results}), float)
    slope = -0.25 if metric == "merged_error" else -0.5
    top = max(float(a[metric]) for c, a in result.results if c["n"] == ns[0] and np.isfinite(a[metric]))
    ax.plot(ns, top * (ns / ns[0]) ** slope, "k--", label=f"slope {slope}")
    ax.set(xscale="log", yscale="log", xlabel="sample size n", ylabel=label)
    ax.legend(fontsize=6)
axes[0].set_title(f"over-specified (L = L* + 1 = {L_star + 1})")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Verdict
#
# The claim held at the sizes used when every row of the experiment's verdict passes: shared
# prompts at the parametric rates (−1/2 for the Voronoi loss and singleton cells, −1/4 for
# merged cells), the over-specified non-shared fit slower than any of them, and the
# regression function at `n^{-1/2}` for both.

# %%
assert result.passed, [r for r in result.rows if not r.passed]
print("claim held: shared prompts learn at parametric rates; non-shared over-specified prompts do not")
