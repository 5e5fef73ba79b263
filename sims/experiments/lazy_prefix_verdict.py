"""Verdict of ``lazy-prefix``: which of the stylized theory's predictions hold in the real model.

Rows, each pass / fail / undecided-with-reason (rule: ``docs/verdicts.md``, section lazy-prefix):

- ntk-gd: the rate claims ``~ m^-1/2`` at matched progress (kernel movement, parameter
  movement and linearisation gap per unit of output change; kernel movement per unit of
  parameter displacement; :data:`sims.experiments.lazy_prefix_regime.MATCHED`), each fitted on
  the m in the long-prefix regime (prefix share of layer 0's attention at init >= 1/2), with
  the all-m fit beside it (undecided: not the claim's regime) when the grid leaves the regime
  (:func:`regime_rows`); the smallest m from which the kernel is stable (movement <= 0.1) and
  the linearised prediction is within 10% (:func:`threshold_row`);
- the negative controls of each ntk-gd in-regime rate: the same fit judged against the
  deliberately wrong exponents of :data:`WRONG_EXPONENTS` (0: the standard scaling's prediction,
  no gain in laziness with m; -1: the nearest competitor on the fast side), which must fail
  (:func:`sims.core.verdicts.wrong_scaling_row`); and the standard-gd arm, whose in-regime
  matched-progress slopes must NOT be -1/2;
- the Adam arms on a prefix (standard-adam, paper 1's optimiser; reparam-adam, paper 2's MLP
  form): the same rate rows and the 10% threshold, reported against the stylized prediction;
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
from sims.core.verdicts import cell_ids, difference_row, rate_row, wrong_scaling_row
from sims.experiments import lazy_prefix_regime as RG
from theory.stats import mean_ci

__all__ = ["THRESHOLD", "MARGIN", "WRONG_EXPONENTS", "row_id", "control_id", "threshold_row", "regime_rows",
           "verdict"]

THRESHOLD = 0.1  # "kernel stable" and "linearised prediction within 10%"
MARGIN = 0.05  # "competitive": test accuracy at most this much below
# The deliberately wrong exponents each ntk-gd rate is also judged against (docs/verdicts.md, lazy-prefix):
# 0, the standard scaling's (alpha = 1: rows move sqrt(m) times further, so a movement per unit of output
# change stays flat) and, for every quantity, "no gain in laziness with m"; -1, the nearest competitor on
# the fast side (alpha = m, or a squared norm). Both are 0.5 from the claim, five times SLOPE_TOL.
WRONG_EXPONENTS = {0.0: ("c0", "the standard scaling's exponent (alpha = 1: movement per unit of progress flat in m)"),
                   -1.0: ("c1", "the fast-side competitor -1 (alpha = m scaling, or a squared norm)")}


def _by_arm(results, arm):
    ms, pairs = RG.tuning(results, arm)
    return ms, {m: [a for _, a in pairs[m]] for m in ms}


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


def _ms_text(ms):
    return ", ".join(str(m) for m in ms)


def _share_text(ms, by_m):
    share = RG.shares(by_m)
    return ("prefix share of layer 0's attention at init (mean over seeds): "
            + ", ".join(f"{share[m]:.2f} (m = {m})" for m in ms))


TOL_WHY = ("the shared band for finite-m corrections (docs/verdicts.md); fitted on the m where the prefix holds "
           ">= 1/2 of layer 0's attention at init, at matched progress (docs/verdicts.md, lazy-prefix)")


def row_id(arm: str, quantity: str) -> str:
    """The id of the in-regime rate row of ``arm`` ("ntk-gd", the control "standard-gd") and
    matched-progress quantity ``quantity`` (a :data:`RG.MATCHED` name): ``"ntk-gd-kernel_change"``;
    its controls add ``-c0``/``-c1``, the all-m fit beside it ``-all``.  The figure
    (``figures/lazy_prefix.py``) finds the rows it draws by these ids."""
    return f"{arm}-{quantity}"


def control_id(claim_id: str, wrong: float) -> str:
    """The id of the wrong-exponent control (``wrong``: a key of :data:`WRONG_EXPONENTS`) of the
    claim row ``claim_id``: ``"ntk-gd-kernel_change-c0"``."""
    return f"{claim_id}-{WRONG_EXPONENTS[wrong][0]}"


def regime_rows(arm, ms, pairs, quantity, *, control_of="", beside=True, id="", controls=()):
    """The rate rows of one (arm, matched-progress quantity): the fit on the in-regime m that
    judges the claim, its wrong-exponent controls (``controls``: keys of :data:`WRONG_EXPONENTS`,
    judged on the same in-regime fit), and (``beside``) the all-m fit, undecided when its range
    leaves the regime.

    ``pairs``: ``{m: [(cell, arrays), ...]}`` (:func:`sims.experiments.lazy_prefix_regime.tuning`).
    ``id``: the claim row's id (its controls' ids: :func:`control_id`); ``control_of``: the id
    of the claim this arm controls.  Rule: docs/verdicts.md, section lazy-prefix.  Fewer than
    :data:`~sims.experiments.lazy_prefix_regime.MIN_REGIME_M` in-regime m: the claim's row (and
    its controls) are undecided, with how many m are in the regime (and, from two m on, the
    slope over them, shown but not judged).
    """
    inside = RG.regime_ms(ms, pairs)
    outside = [m for m in ms if m not in inside]
    kind = f"control {arm}" if control_of else arm
    verb = "not ~" if control_of else "~"
    claim = f"{kind}: {quantity.label} {verb} m^-1/2, long-prefix regime"
    what = f"log-log slope in m of {quantity.name}"
    share = _share_text(ms, pairs)

    def fit(text, grid, rid="", wrong=None, **kw):
        xs, y, used = RG.values(grid, pairs, quantity)
        if wrong is not None:
            return wrong_scaling_row(rid, id, text, xs, y, wrong=wrong, quantity=what, cells=cell_ids(used),
                                     why=f"{WRONG_EXPONENTS[wrong][1]}; same fit as the claim, the shared band "
                                         f"(docs/verdicts.md, lazy-prefix)")
        return rate_row(rid, text, xs, y, predicted=-0.5, quantity=what, control_of=control_of,
                        cells=cell_ids(used), tol_why=TOL_WHY, **kw)

    links = {w: control_id(id, w) for w in controls}
    enough = len(inside) >= RG.MIN_REGIME_M
    grid = inside if len(inside) >= 2 else (inside or ms[-1:])  # < 2 m: rate_row's "undecided"
    where = f"(m = {_ms_text(inside)})" if len(inside) >= 2 else f"(share >= {RG.REGIME_SHARE:g})"
    judged = [fit(f"{claim} {where}", grid, id, controls=tuple(links.values()))]
    judged += [fit(f"control: {arm}'s {quantity.label} not ~ m^{w:g} (the claim's fit against a wrong exponent) "
                   f"{where}", grid, links[w], wrong=w) for w in controls]
    rows = []
    need = (f"a rate needs at least {RG.MIN_REGIME_M} in-regime m (two points cannot tell a power law from "
            f"finite-m curvature); the share grows with m, so a grid reaching larger m would decide it")
    for row in judged:
        if enough:
            rows.append(dataclasses.replace(row, detail=_join(row.detail, share)))
        elif len(inside) >= 2:  # the slope over the in-regime m is shown, not judged
            rows.append(dataclasses.replace(
                row, status="undecided", passed=False, n_needed=None,
                detail=_join(f"only {len(inside)} in-regime m ({_ms_text(inside)})", need, f"{row.status} on its own",
                             share)))
        else:
            rows.append(dataclasses.replace(
                row, status="undecided", passed=False, measured=f"{len(inside)} of {len(ms)} m in the regime",
                n_needed=None, detail=_join(need, share)))
    if beside and outside and len(ms) >= 2:
        row = fit(f"{kind}: {quantity.label} {verb} m^-1/2 over all m = {_ms_text(ms)}, including "
                  f"m = {_ms_text(outside)} outside the long-prefix regime", ms, f"{id}-all" if id else "")
        rows.append(dataclasses.replace(
            row, status="undecided", passed=False, n_needed=None,
            detail=f"not the claim's regime: the fit includes m whose prefix share is below {RG.REGIME_SHARE:g}; "
                   f"shown beside the in-regime row, it does not judge the claim ({row.status} on its own); {share}"))
    return rows


def _join(*parts):
    return "; ".join(p for p in parts if p)


def _lazy_rows(results):
    rows = []
    ms, pairs = RG.tuning(results, "ntk-gd")
    by_m = {m: [a for _, a in pairs[m]] for m in ms}
    if ms:
        for quantity in RG.MATCHED:
            rows += regime_rows("ntk-gd", ms, pairs, quantity, id=row_id("ntk-gd", quantity.name),
                                controls=tuple(WRONG_EXPONENTS))
        rows.append(threshold_row("ntk-gd: kernel stable (movement <= 0.1)", ms, by_m, "kernel_change"))
        rows.append(threshold_row("ntk-gd: linearised prediction within 10%", ms, by_m, "lin_gap"))
    cms, cpairs = RG.tuning(results, "standard-gd")
    if cms:
        for quantity in RG.MATCHED[:2]:
            claim_id, arm_id = row_id("ntk-gd", quantity.name), row_id("standard-gd", quantity.name)
            rows += regime_rows("standard-gd", cms, cpairs, quantity, control_of=claim_id, beside=False,
                                id=arm_id)
            rows = [dataclasses.replace(r, controls=(*r.controls, arm_id))
                    if r.id == claim_id else r for r in rows]  # the claim names every control of it
    for arm, what in (("standard-adam", "paper 1's optimiser"), ("reparam-adam", "paper 2's MLP form")):
        ams, apairs = RG.tuning(results, arm)
        if not ams:
            continue
        for quantity in RG.MATCHED[:3]:
            rows += regime_rows(f"{arm} ({what})", ams, apairs, quantity)
        rows.append(threshold_row(f"{arm}: linearised prediction within 10%", ams,
                                  {m: [a for _, a in apairs[m]] for m in ams}, "lin_gap"))
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
