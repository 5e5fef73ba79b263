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
# # 5. Trained NTK-Attention summaries: paper 1's section 4.4 experiment, rebuilt
#
# **Setting** (spec §4, "Trained summary"; paper 1, section 4.4).  Frozen `W_Q, W_K, W_V`, a
# prefix `P` of m rows, and NTK-Attention's summaries `(Z, k)` trained directly (initialised
# independently of P) with Adam (lr 1e-3 in the paper) on a fresh random input `X` each step,
# to match `PrefixAttn(X, P)`; the validation MSE is reported against m.  Paper scale:
# `d = 64`, `L = 128`, `m ∈ {2, 4, …, 2^18}`, 40 000 steps, 8 000 validation inputs.
#
# **Assumptions.** Logits stay bounded: the frozen weights are `N(0, 1/d)` here
# (`weight_scale = 1`), because unscaled `N(0, 1)` weights give logits near 350 and a one-hot
# softmax that no bounded feature map can follow.  Feature maps: `elu` (the public reference
# code, no approximation guarantee) and degree-2 `taylor`.
#
# **What is proved, and what the paper reports.** Nothing is proved about *trained* summaries:
# paper 1's guarantee is for the exact summary with polynomial features (notebook 4).  Its
# section 4.4 reports, empirically, a small validation error for every prefix length: a
# trained summary of `r d + r` numbers stands in for prefixes of any length.
#
# **What the spec reconstructs.** The public script does not run as published and, once made
# to run, counts the prefix twice (its optimum is `Z = k = 0`); the `ntk-attention-train`
# experiment fixes this (see its docstring) and shows it numerically.  A second issue found
# while rebuilding: the exact summary grows linearly in m while Adam moves each parameter by
# about lr per step, so with the paper's parametrization (`scale = 1`) large m cannot be
# reached in the step budget; training `(Z, k) = m · (Z', k')` (`scale_by_m`) removes it without
# changing the function class.  The claim checked: **training lowers the validation MSE for
# every m, and the trained Taylor summary is at least as accurate as the exact summary of the
# same features** (which is a feasible point), with logits bounded and the public objective's
# double count shown.  The paper's own parametrization is run beside it for comparison.

# %%
import os
from pathlib import Path

import sims

RUN_CONTEXT = sims.context(precision="float64")  # float64 from here on (sims.runtime); theory sets nothing
RUN_CONTEXT.__enter__()

import matplotlib.pyplot as plt

import sims.core as engine
from sims.core.verdicts import measured_text, predicted_text
from sims.experiments import get

FULL = os.environ.get("PREFIX_NTK_FULL", "") not in ("", "0")
RESULTS = Path(os.environ.get("PREFIX_NTK_RESULTS", "results"))
print("size:", "full" if FULL else "small", "| results folder:", RESULTS)

# %%
exp = get("ntk-attention-train")
if FULL:  # the paper's sizes (long: 36 cells of 40 000 Adam steps each, per parametrization)
    config = exp.config(scale_by_m=True)
else:
    config = exp.config(m=(16, 1024), d=4, L=8, steps=3000, val_size=32, lr=1e-2, scale_by_m=True)
paper = exp.config(**{**{f: getattr(config, f) for f in config.__dataclass_fields__}, "scale_by_m": False})
print(f"d = {config.d}, L = {config.L}, m = {config.m}, steps = {config.steps}, lr = {config.lr}, "
      f"weights ~ N(0, {config.weight_scale}^2/d)")
result = engine.run(exp, config, out=RESULTS, precision="float64")
result_paper = engine.run(exp, paper, out=RESULTS, precision="float64")
for title, res in (("scaled by m", result), ("paper's parametrization (scale 1)", result_paper)):
    print(f"--- {title}")
    for row in res.rows:
        print(f"[{row.status.upper()}] {row.id} {row.claim}: predicted {predicted_text(row)}; measured {measured_text(row)}")

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
for i, feature in enumerate(config.feature):
    for res, style, tag in ((result, "o-", "scaled by m"), (result_paper, "s:", "paper (scale 1)")):
        rows = sorted(((c, a) for c, a in res.results if c["feature"] == feature), key=lambda ca: ca[0]["m"])
        ms = [c["m"] for c, _ in rows]
        rel = [float(a["val_mse"] / a["target_power"]) for _, a in rows]
        ax1.plot(ms, rel, style, color=f"C{i}", label=f"{feature}, trained, {tag}")
    rows = sorted(((c, a) for c, a in result.results if c["feature"] == feature), key=lambda ca: ca[0]["m"])
    ax1.plot([c["m"] for c, _ in rows], [float(a["val_mse_exact"] / a["target_power"]) for _, a in rows], "--",
             color=f"C{i}", label=f"{feature}, exact summary")
    ax1.plot([c["m"] for c, _ in rows], [float(a["val_mse_init"] / a["target_power"]) for _, a in rows], "x:",
             color="grey", label="initialisation (control)" if i == 0 else None)
    ax2.plot([c["m"] for c, _ in rows], [float(a["summary_norm"]) for _, a in rows], "o-", color=f"C{i}",
             label=f"{feature}: trained (scaled by m)")
    rows_p = sorted(((c, a) for c, a in result_paper.results if c["feature"] == feature), key=lambda ca: ca[0]["m"])
    ax2.plot([c["m"] for c, _ in rows_p], [float(a["summary_norm"]) for _, a in rows_p], "s:", color=f"C{i}",
             label=f"{feature}: trained (paper)")
    ax2.plot([c["m"] for c, _ in rows], [float(a["exact_summary_norm"]) for _, a in rows], "--", color=f"C{i}",
             label=f"{feature}: exact")
ax1.set(xscale="log", yscale="log", xlabel="prefix length m", ylabel="validation MSE / target power",
        title="validation error")
ax1.legend(fontsize=6)
ax2.set(xscale="log", yscale="log", xlabel="prefix length m", ylabel=r"$\|Z\|_F$", title="summary size")
ax2.legend(fontsize=6)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Verdict
#
# The claim held at the sizes used when every verdict row of the scaled run passes: logits
# bounded, the public objective's optimum at `Z = k = 0` (where it is evaluated), training
# lowering the validation MSE for every m and feature map, and the trained Taylor summary
# at least as accurate as the exact one.  The paper-parametrization run is reported, not
# asserted: at large m it falls short of the exact summary, as explained above.

# %%
assert result.passed, [r for r in result.rows if not r.passed]
print("claim held: trained (Z, k) summaries match prefix attention at every m (scaled parametrization)")
