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
# # 2. Gradient descent on a long prefix: linear convergence and lazy training
#
# **Setting** (spec §2.1; paper 1's NTK analysis of ultra-long prefixes).  The `prefix` model
# (spec 2.C, tied prefix attention: the rows are both keys and values, centred at
# initialisation) is trained on `L(P) = ½ Σ_i ||F(P; x_i) − y_i||²` by full-batch gradient
# descent `P ← P − η ∇L` with a constant step `η = 1/||H*||_2`; only the prefix moves.
#
# **Assumptions.** NTK scaling (a `sqrt(m)` factor on the output), Gaussian initialisation,
# distinct non-degenerate inputs so that `λ = λ_min(H*) > 0`, and m large.
#
# **What is proved** (paper 1): for m above a polynomial threshold, with high probability,
# the loss decreases linearly, `L(t) ≤ (1 − ηλ/2)^t L(0)` for every t, each prefix row moves
# only `O(1/sqrt(m))` ("lazy training") and the kernel stays within `O(1/sqrt(m))` of its
# initial value along the whole trajectory.
#
# **What the spec reconstructs** (as measurable claims, spec §2.1): 1. `||H(0) − H*|| ~ m^{-1/2}`;
# 2. `λ_min(H(0)) ≥ λ/2` from some m on; 3. the loss bound for all t once m is large;
# 4. row movement `~ m^{-1/2}` (root mean square; the *maximum* over rows carries the largest
# softmax weight and has the extreme-value slope of `m^{-1/2} e^{σ|u|sqrt(2 log m)}`, claim 4b);
# 5. `sup_t ||H(t) − H(0)|| ~ m^{-1/2}`; 6. distance to kernel regression `~ m^{-1/2}` (notebook 3).
# Slopes are fitted on a ladder of m with 95% confidence intervals over seeds; a claim passes
# when its interval contains the prediction.  **Negative control:** the same model without the
# `sqrt(m)` factor (mean-field parametrization) is trained alongside; its rows move O(1) and
# claims 4–6 must *fail* for it.

# %%
import os
from pathlib import Path

import sims

RUN_CONTEXT = sims.context(precision="float64")  # float64 from here on (sims.runtime); theory sets nothing
RUN_CONTEXT.__enter__()

import matplotlib.pyplot as plt
import numpy as np

import sims.core as engine
from sims.core.verdicts import measured_text, predicted_text
from sims.experiments import get
from theory.stats import fit_loglog_slope

# Size switch: small by default (seconds); PREFIX_NTK_FULL=1 runs the README's main job
# (m = 1562 ... 100000, 100 steps, 3 seeds).
FULL = os.environ.get("PREFIX_NTK_FULL", "") not in ("", "0")
RESULTS = Path(os.environ.get("PREFIX_NTK_RESULTS", "results"))
print("size:", "full" if FULL else "small", "| results folder:", RESULTS)

# %%
exp = get("convergence")
if FULL:
    config = exp.config(m=(100_000,))
else:
    config = exp.config(m=(4000,), ladder=3, n=6, d=8, steps=40, log_every=20, seeds=3)
print("m ladder:", config.grid(), "| steps:", config.steps, "| seeds:", config.seeds)
result = engine.run(exp, config, out=RESULTS, precision="float64")
for row in result.rows:
    print(f"[{row.status.upper()}] {row.id} {row.claim}: predicted {predicted_text(row)}; measured {measured_text(row)}")

# %% [markdown]
# ## Loss curves, and the rates in m
#
# Left: `L(t)/L(0)` at each m (mean of log over seeds) under the bound `(1 − ηλ/2)^t`, and
# the mean-field control in grey.  Right: each quantity divided by its value at the smallest
# m, so that one reference line of slope −1/2 serves all of them; the control in grey.

# %%
ntk = [(c, a) for c, a in result.results if c["parametrization"] == "ntk"]
mf = [(c, a) for c, a in result.results if c["parametrization"] == "mean-field"]
ms = sorted({c["m"] for c, _ in ntk})


def per_m(res, key):
    grid = sorted({c["m"] for c, _ in res})
    return np.array(grid, float), np.array([[float(np.max(a[key])) for c, a in res if c["m"] == m] for m in grid])


fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
for i, m in enumerate(ms):
    curves = np.array([a["loss"] / a["loss"][0] for c, a in ntk if c["m"] == m])
    ax1.plot(np.exp(np.log(curves).mean(0)), color=f"C{i}", label=f"m = {m:,}")
a0 = ntk[0][1]
ax1.plot(a0["loss_bound"] / a0["loss"][0], "k--", label=r"bound $(1-\eta\lambda/2)^t$")
if mf:
    curves = np.array([a["loss"] / a["loss"][0] for c, a in mf if c["m"] == ms[-1]])
    ax1.plot(np.exp(np.log(curves).mean(0)), ":", color="grey", label=f"mean-field control, m = {ms[-1]:,}")
ax1.set(yscale="log", xlabel="step t", ylabel="L(t)/L(0)", title="linear convergence")
ax1.legend(fontsize=7)

series = [("H0_err", r"$\|H(0)-H^*\|$"), ("kernel_change", r"$\sup_t\|H(t)-H(0)\|$"),
          ("movement_rms", r"rms row movement"), ("lin_dist", r"$\sup_t\|r(t)-r_{lin}(t)\|$")]
for i, (key, label) in enumerate(series):
    x, Y = per_m(ntk, key)
    fit = fit_loglog_slope(x, Y)
    gm = np.exp(np.log(Y).mean(1))
    ax2.plot(x, gm / gm[0], "o-", color=f"C{i}", label=f"{label}: {fit.slope:.2f} [{fit.low:.2f}, {fit.high:.2f}]")
    if mf and key != "H0_err":
        xc, Yc = per_m(mf, key)
        gc = np.exp(np.log(np.maximum(Yc, 1e-300)).mean(1))
        ax2.plot(xc, gc / gc[0], "o:", color="grey", mfc="white")
ax2.plot(x, (x / x[0]) ** -0.5, "k--", label="predicted slope −1/2")
ax2.plot([], [], "o:", color="grey", mfc="white", label="mean-field control")
ax2.set(xscale="log", yscale="log", xlabel="prefix length m", ylabel="relative to the smallest m", title="rates")
ax2.legend(fontsize=7)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Verdict
#
# The theorem's claims held at the sizes used when no row of the verdict fails, claims 2–4
# pass, and the mean-field control's rates 4–6 are *not* m^-1/2 (recorded as caught control
# rows c4–c6).  A rate row passes only when its 95% interval lies inside −1/2 ± 0.1
# (`docs/verdicts.md`); with 3 seeds on m = 250…4000 claims 1, 4b, 5 and 6 are undecided (their
# intervals are too wide; each row says how many seeds would decide it), and none fails.

# %%
claims = {r.id: r for r in result.rows}
for c in ("2", "3", "4"):
    assert claims[c].passed, claims[c]
for c in ("1", "4b", "5", "6"):
    assert not claims[c].failed, claims[c]
controls = [r for r in result.rows if r.is_control]
assert controls and all(r.passed for r in controls), controls
assert result.passed, [r for r in result.rows if not r.passed]
print("no claim failed: linear convergence and lazy rows hold, the mean-field control is caught; "
      "rate rows the equivalence rule cannot decide at this size say so above")
