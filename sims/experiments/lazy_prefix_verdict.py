"""Verdict of ``lazy-prefix``: which of the stylized theory's predictions hold in the real model.

Rows, each pass / fail / undecided-with-reason:

- ntk-gd: the log-log slopes in m (95% CI over seeds) of the kernel movement, the parameter
  movement and the linearisation gap against the stylized -1/2 (``sims.core.verdicts.slope_row``),
  also per unit of output change; the smallest m from which the kernel is stable (movement
  <= 0.1) and the linearised prediction is within 10% (:func:`threshold_row`);
- the negative control standard-gd: its slopes must NOT be -1/2;
- the Adam arms on a prefix (standard-adam, paper 1's optimiser; reparam-adam, paper 2's MLP
  form): the same slopes and the 10% threshold, reported against the stylized prediction;
- the papers' downstream claims at the largest m, by Welch intervals of accuracy differences
  (``sims.core.verdicts.difference_row``): NTK-Attention competitive (at most ``MARGIN``
  below) with P-Tuning v2 (the prefix with Adam) and with LoRA of matched parameter count
  (paper 1); the reparameterised prefix better than the direct one (paper 2);
- every arm's downstream accuracy at the largest m against chance 1/p.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sims.core.experiment import VerdictRow
from sims.core.verdicts import difference_row, rate_row
from theory.stats import mean_ci

__all__ = ["THRESHOLD", "MARGIN", "threshold_row", "verdict"]

THRESHOLD = 0.1  # "kernel stable" and "linearised prediction within 10%"
MARGIN = 0.05  # "competitive": test accuracy at most this much below
CLAIMS = [("relative kernel movement sup_t ||H(t)-H(0)||/||H(0)||", "kernel_change"),
          ("relative parameter movement ||theta(T)-theta_0||/||theta_0||", "param_change"),
          ("linearisation gap ||F(T)-F_lin(T)||/||F(T)-F(0)||", "lin_gap")]


def _by_arm(results, arm):
    rows = [(c, a) for c, a in results if c.get("role") == "tune" and c["arm"] == arm]
    ms = sorted({c["m"] for c, _ in rows})
    return ms, {m: [a for c, a in rows if c["m"] == m] for m in ms}


def threshold_row(claim, ms, by_m, key, *, level=THRESHOLD):
    """Smallest m from which ``key`` <= level holds (95% CI over seeds below it) at every larger m.

    At each m: holds if the upper CI end is <= level, fails if the lower end is > level,
    undecided otherwise.  Pass iff it holds at the largest m.
    """
    state = {}
    for m in ms:
        v = [float(a[key]) for a in by_m[m]]
        mean, lo, hi = mean_ci(v)
        state[m] = "holds" if hi <= level else ("fails" if lo > level else "undecided")
    top = ms[-1]
    top_mean = float(np.mean([float(a[key]) for a in by_m[top]]))
    since = None
    for m in reversed(ms):
        if state[m] != "holds":
            break
        since = m
    if since is not None:
        measured = f"holds from m = {since} (mean {top_mean:.3g} at m = {top})"
    elif state[top] == "undecided":
        measured = f"at m = {top} the seeds' 95% CI straddles {level:g} (mean {top_mean:.3g})"
        return VerdictRow.undecided(claim, f"<= {level:g} from some m", measured,
                                    "undecided at this size: more seeds or a larger m would decide it")
    else:
        measured = f"not reached up to m = {top} (mean {top_mean:.3g})"
    return VerdictRow(claim, f"<= {level:g} from some m", measured, since is not None)


def _lazy_rows(results):
    rows = []
    ms, by_m = _by_arm(results, "ntk-gd")
    if ms:
        for claim, key in CLAIMS:
            rows.append(rate_row("", f"ntk-gd: {claim} ~ m^-1/2", ms, [[float(a[key]) for a in by_m[m]] for m in ms],
                                 predicted=-0.5, quantity=f"log-log slope of {key} in m"))
        for claim, key in CLAIMS[:2]:  # per unit of function-space progress (training budget confound removed)
            rows.append(rate_row("", f"ntk-gd: {claim.split(' ||')[0]} / output change ~ m^-1/2", ms,
                                 [[float(a[key]) / float(a["output_change"]) for a in by_m[m]] for m in ms],
                                 predicted=-0.5, quantity=f"log-log slope of {key} / output_change in m"))
        rows.append(threshold_row("ntk-gd: kernel stable (movement <= 0.1)", ms, by_m, "kernel_change"))
        rows.append(threshold_row("ntk-gd: linearised prediction within 10%", ms, by_m, "lin_gap"))
    cms, cby = _by_arm(results, "standard-gd")
    if cms:
        for claim, key in CLAIMS[:2]:
            rows.append(rate_row("", f"control standard-gd: {claim} not ~ m^-1/2", cms,
                                 [[float(a[key]) for a in cby[m]] for m in cms], predicted=-0.5,
                                 quantity=f"log-log slope of {key} in m (standard scaling)", control_of="ntk-gd"))
    for arm, what in (("standard-adam", "paper 1's optimiser"), ("reparam-adam", "paper 2's MLP form")):
        ams, aby = _by_arm(results, arm)
        if not ams:
            continue
        for claim, key in CLAIMS:
            rows.append(rate_row("", f"{arm} ({what}): {claim} ~ m^-1/2", ams,
                                 [[float(a[key]) for a in aby[m]] for m in ams], predicted=-0.5,
                                 quantity=f"log-log slope of {key} in m"))
        rows.append(threshold_row(f"{arm}: linearised prediction within 10%", ams, aby, "lin_gap"))
    return rows


def _paper_rows(results):
    rows = []
    comparisons = [
        ("ntk-attention-adam", "standard-adam", -MARGIN, False,
         "paper 1: NTK-Attention (trained summary) competitive with P-Tuning v2 (prefix, Adam)"),
        ("ntk-attention-adam", "lora-adam", -MARGIN, False,
         "paper 1: NTK-Attention competitive with LoRA of matched parameter count"),
        ("reparam-adam", "standard-adam", 0.0, True,
         "paper 2: the reparameterised prefix beats the direct one (Adam)"),
    ]
    for a, b, at_least, strict, claim in comparisons:
        ma, by_a = _by_arm(results, a)
        mb, by_b = _by_arm(results, b)
        common = sorted(set(ma) & set(mb))
        if not common:
            continue
        top = common[-1]
        rows.append(difference_row("", f"{claim}: test accuracy difference at m = {top}",
                                   [float(x["test_accuracy"]) for x in by_a[top]],
                                   [float(x["test_accuracy"]) for x in by_b[top]], at_least=at_least, strict=strict,
                                   quantity="difference of mean test accuracies"))
    return rows


def _chance_rows(cfg, results):
    rows = []
    for arm in cfg.arms:
        ams, aby = _by_arm(results, arm)
        if not ams:
            continue
        top = ams[-1]
        mean, lo, hi = mean_ci([float(a["test_accuracy"]) for a in aby[top]])
        chance = 1.0 / (cfg.size("p"))
        claim, pred, meas = (f"{arm}: downstream test accuracy at m = {top} above chance", f"> {chance:.3g}",
                             f"{mean:.3f} [{lo:.3f}, {hi:.3f}]")
        if lo <= chance < hi:  # the interval straddles chance: more seeds would decide it
            rows.append(VerdictRow.undecided(claim, pred, meas, "95% t-interval over seeds straddles chance: "
                                             "undecided at this size, more seeds would decide it"))
        else:
            rows.append(VerdictRow(claim, pred, meas, lo > chance, "95% t-interval over seeds"))
    return rows


def verdict(cfg, results) -> list[VerdictRow]:
    """The rows of the module docstring, each noting the base model (and its accuracies)."""
    base = [a for c, a in results if c.get("role") == "base"]
    note = f"base: {cfg.base}"
    if base and cfg.base == "pretrained":
        note += (f" (pre-train test accuracy {float(base[0]['pretrain_test_accuracy']):.2f}, "
                 f"zero-shot downstream {float(base[0]['zero_shot_downstream_accuracy']):.2f})")
    spread = [float(a["prefix_logit_spread"]) for c, a in results
              if c.get("role") == "tune" and "prefix_logit_spread" in a]
    if spread:
        note += f"; prefix logit spread s at init {min(spread):.2f}-{max(spread):.2f} (sigma = {cfg.sigma:g})"
    rows = _lazy_rows(results) + _paper_rows(results) + _chance_rows(cfg, results)
    return [dataclasses.replace(r, detail=(r.detail + "; " if r.detail else "") + note) for r in rows]
