"""Prefix-tuning as a mixture of experts: shared vs non-shared prompts (spec section 5, paper 2).

The fixed problem (one attention row as an MoE with ``L* = 2`` true prompts, a fixed truth) and
the measures of one fit are :mod:`sims.experiments.reparam_problem`.  The least-squares estimator
(:func:`theory.moe.multistart.fit_multistart`: float64, Adam then Levenberg-Marquardt, locations
restricted to ``[-bound, bound]``, the lowest loss over split starts of an ``L - 1`` pilot fit and
random starts; none uses the truth) is fitted with ``L = L* + extra`` prompts for each structure.
A start near the truth (``oracle_start``) is fitted beside it as a diagnostic only.  See
``docs/reparam_model.md`` for the derivations.

Effective sample size.  Least squares with ``n`` samples at noise ``sigma`` depends on the noise
through ``sigma^2 / n`` (the loss's statistical resolution): a cell of sample size ``n`` and
``n_eff`` has ``sigma = sigma0 sqrt(n / n_eff)`` (``sigma0 = --noise``), so a fixed, cheap ``n``
covers ``n_eff = 1e4 .. 1e8``.  ``--no-trade-noise`` instead uses ``n = n_eff`` at ``sigma0``.
The LM polish stops when the Gauss-Newton model predicts less than ``resolution * sigma_hat^2/n``
of the loss left (:func:`theory.moe.fit.fit_least_squares`), so every fit is resolved to the same
fraction of its own statistical resolution.  A row is undecided unless, at every n_eff, at least
90% of the fits had their lowest loss reached by two or more truth-free starts (within
``basin_tol * sigma_hat^2/n``) and at most 10% lie more than that above the oracle start: the
least-squares minimum, not a local stop, is what the rates are about.

Measured per cell: :func:`sims.experiments.reparam_problem.metrics` (the Voronoi loss and its
parts, the singleton and merged-cell errors, the merged-cell second moment ``merged_m2``, the fit
shape, the L2 error of the regression function, the optimiser's record).

Verdict (:mod:`sims.experiments.reparam_verdict`: slopes against ``n_eff`` with 95% intervals, each
row pass, fail or undecided with the size that would decide it):

- exact-specified (every structure): Voronoi loss and singleton-cell error ~ n^{-1/2};
- shared, over-specified: mean Voronoi loss ~ n^{-1/2}, singleton-cell error ~ n^{-1/2},
  RMS merged-cell error ~ n^{-1/4}, mean ``merged_m2`` ~ n^{-1/2};
- non-shared, over-specified: merged cells flatter than the shared rates (the RMS merged-cell
  error's slope above -1/4, the mean ``merged_m2``'s above -1/2): a fixed truth can show this
  flattening, not "no polynomial rate" itself (docs/reparam_model.md);
- ``||f_hat - f*||_L2 ~ n^{-1/2}`` for every structure and L;
- shared_linear vs nonshared (same ``f*``): merged-cell ``(p^K, p^V)`` error smaller when shared;
- a negative control per rate claim: the same test on the data times a wrong rate fails (merged cells: the
  rates of the table below; parametric n^-1/2 rows: n_eff^(1/4), i.e. the merged-cell rate -1/4);
- with ``--bound-alt``: the ``merged_m2`` slope does not depend on ``bound``.
"""

from __future__ import annotations

import dataclasses
import math

from sims.core.checks import COUNT, SCALE, Count, Interval, check_ranges, need_distinct
from sims.core.experiment import Experiment, VerdictRow, register
from sims.experiments import reparam_identifiability as _identifiability
from sims.experiments import reparam_verdict as V
from sims.experiments.common import cell_dtype, option as _f
from sims.experiments.reparam_problem import L_STAR, run_rate
from theory.moe.model import STRUCTURES

QUICK_N_EFF = (10_000, 100_000, 1_000_000, 10_000_000, 100_000_000)
FULL_N_EFF = QUICK_N_EFF
AGREED_SHARE = 0.9  # a row is undecided unless, at every n_eff, >= 90% of fits had their best loss reached twice


@dataclasses.dataclass(frozen=True)
class ReparamConfig:
    quick: bool = _f(False, "Quick size: n = 400, 8 replications, 2 split + 2 random starts, at most 2000 LM steps "
                            "per start.")
    structures: tuple[str, ...] = _f(STRUCTURES, "Prompt structures to fit.", choices=STRUCTURES)
    n_eff: tuple[int, ...] = _f((), "Effective sample sizes n (sigma0/sigma)^2; empty = 1e4..1e8 (5 points).",
                                 Count(ge=10))
    n: int = _f(0, "Real sample size per fit (noise traded for n_eff); 0 = 400 (quick) or 1000.", Count(ge=0))
    trade_noise: bool = _f(True, "Reach n_eff by lowering the noise at fixed n; --no-trade-noise: n = n_eff.")
    replications: int = _f(0, "Replications per (structure, L, n_eff); 0 = 8 (quick) or 16.", Count(ge=0))
    extra: tuple[int, ...] = _f((0, 1), "Fit L = L* + extra prompts (L* = 2); 0 = exact, 1 = over-specified.",
                                Count(ge=0))
    noise: float = _f(0.1, "Reference noise sigma0: a cell's noise is sigma0 sqrt(n / n_eff).", SCALE)
    split_starts: int = _f(0, "Split starts per fit (an atom of the L-1 pilot fit split in two; the first with "
                              "--jitter, the others with --wide-jitter); 0 = 2 (quick) or 3.", Count(ge=0))
    random_starts: int = _f(0, "Random starts per fit; 0 = 2 (quick) or 3.", Count(ge=0))
    oracle_start: bool = _f(True, "Also fit one start near the truth, as a diagnostic only (never the estimate).")
    basin_tol: float = _f(0.1, "A start reached the best basin when its loss is within basin_tol * sigma_hat^2/n "
                               "of the best.", SCALE)
    adam_steps: int = _f(50, "Adam steps before the Levenberg-Marquardt polish.", Count(ge=0))
    polish_steps: int = _f(0, "Maximum LM iterations per start; 0 = 2000 (quick) or 20000.", Count(ge=0))
    resolution: float = _f(1e-2, "LM stops when the Gauss-Newton model leaves < resolution * sigma_hat^2/n of the "
                                 "loss (sigma^2/n: the loss's statistical resolution).",
                                 Interval(gt=0, le=1))
    bound: float = _f(5.0, "Compact parameter set of the estimator: every p^K, p^V, p' entry in [-bound, bound].",
                      SCALE)
    bound_alt: float = _f(0.0, "If > 0, also fit over-specified cells with this bound (sensitivity row).",
                          Interval(ge=0, le=1e3))
    gate_scale: float = _f(1.0, "Multiplies W_Q, i.e. the range of the gating logits (1 = the fixed problem).",
                           SCALE)
    jitter: float = _f(0.1, "Jitter (standard deviation) of the first split start's locations (and of the oracle "
                            "start's).", SCALE)
    wide_jitter: float = _f(0.5, "Jitter of the other split starts.", SCALE)
    n_test: int = _f(4000, "Test inputs for the L2 error of the regression function.", COUNT)
    r: float = _f(1.0, "Power of the non-shared Voronoi loss (>= 1).", Interval(ge=1, le=100))

    def __post_init__(self):
        check_ranges(self)
        bad = [s for s in self.structures if s not in STRUCTURES]
        if bad or not self.structures:
            raise ValueError(f"structures must be a non-empty subset of {STRUCTURES}, got {self.structures}")
        if not self.extra:
            raise ValueError(f"extra must be non-empty, got {self.extra}")
        if self.n and self.n < 10:
            raise ValueError(f"n must be >= 10 (or 0 for the default), got {self.n}")

    def grid(self) -> tuple[int, ...]:
        return tuple(sorted({int(n) for n in self.n_eff})) or (QUICK_N_EFF if self.quick else FULL_N_EFF)

    def size(self) -> int:
        return self.n or (400 if self.quick else 1000)

    def reps(self) -> int:
        return self.replications or (8 if self.quick else 16)

    def starts(self) -> tuple[int, int]:
        """``(split starts, random starts)`` per fit."""
        default = 2 if self.quick else 3
        return self.split_starts or default, self.random_starts or default

    def steps(self) -> int:
        return self.polish_steps or (2000 if self.quick else 20000)

    def tol(self) -> float:
        return self.resolution


def cells(cfg: ReparamConfig) -> list[dict]:
    splits, randoms = cfg.starts()
    common = {"kind": "rate", "split_starts": splits, "random_starts": randoms, "oracle_start": cfg.oracle_start,
              "basin_tol": cfg.basin_tol, "adam_steps": cfg.adam_steps, "polish_steps": cfg.steps(),
              "resolution": cfg.tol(), "jitter": cfg.jitter, "wide_jitter": cfg.wide_jitter, "n_test": cfg.n_test,
              "r": cfg.r, "gate_scale": cfg.gate_scale, "L_star": L_STAR}
    out = []
    bounds = [(cfg.bound, False)] + ([(cfg.bound_alt, True)] if cfg.bound_alt > 0 else [])
    for s in cfg.structures:
        for e in sorted(set(int(e) for e in cfg.extra)):
            for bound, alt in bounds:
                if alt and e == 0:
                    continue
                for n_eff in cfg.grid():
                    n = cfg.size() if cfg.trade_noise else n_eff
                    noise = cfg.noise * math.sqrt(n / n_eff)
                    out += [{**common, "structure": s, "L": L_STAR + e, "n": n, "n_eff": n_eff, "noise": noise,
                             "bound": bound, "seed": rep} for rep in range(cfg.reps())]
    return out + _extra_cells(cfg)


def run(cell, *, key):
    if cell.get("kind", "rate") != "rate":
        return _extra_module(cell["kind"]).run(cell, key=key)
    return run_rate(cell, key=key)


def estimate_bytes(cell) -> int:
    if cell.get("kind", "rate") != "rate":
        est = getattr(_extra_module(cell["kind"]), "estimate_bytes", None)
        return est(cell) if est else 256 << 20
    item = cell_dtype(cell).itemsize
    n, L = int(cell["n"]), int(cell["L"])
    p = L * (1 + 2 * 2)  # parameters per fit, at most (non-shared)
    # data and features, residuals and the (2n, p) Jacobian with its linearisation, test set.
    return item * (n * (4 + 2 + 5) * 4 + 2 * n * p * 3 + int(cell["n_test"]) * 16) + (64 << 20)


# ----------------------------------------------------------------------------- verdict


# (claim, metric, stat, predicted, kind, wrong) of the merged-cell claims; ``wrong`` is the negative
# control's extra rate.  A parametric n^-1/2 row's control multiplies its data by n_eff^(1/4): the claim's
# fit judged against -1/4, the merged-cell rate it is contrasted with (docs/verdicts.md, reparam).
PARAMETRIC_WRONG = 0.25
SHARED_MERGED = (("merged-cell error ~ n^-1/4", "merged_error", "rms", -0.25, "equals", -0.25),
                 ("merged-cell sum w||Delta||^2 ~ n^-1/2", "merged_m2", "mean", -0.5, "equals", 0.5))
NONSHARED_MERGED = (("merged-cell error flatter than n^-1/4", "merged_error", "rms", -0.25, "above", -0.5),
                    ("merged-cell sum w||Delta||^2 flatter than n^-1/2", "merged_m2", "mean", -0.5, "above", -1.0))


def verdict(cfg: ReparamConfig, results) -> list[VerdictRow]:
    rows = []
    rate = [(c, a) for c, a in results if c.get("kind", "rate") == "rate"]
    present = {(c["structure"], c["L"]) for c, _ in rate}
    for s in STRUCTURES:
        for L in sorted(L for st, L in present if st == s):
            tag = f"{s} L={L} ({'exact' if L == L_STAR else 'over-specified'})"

            # Every row is undecided when the lowest loss is not established as the least-squares minimum.
            shape, blocker = V.fit_shape(rate, s, L, cfg.bound, AGREED_SHARE, cfg.basin_tol)

            def add(claim, metric, predicted, stat="geometric", kind="equals", extra="", wrong=PARAMETRIC_WRONG):
                """The claim's row and its negative control: the same test on the data times n_eff^wrong."""
                xs, y = V.table(rate, s, L, metric, bound=cfg.bound)
                cid = f"{s}-L{L}-{metric}"
                rows.append(dataclasses.replace(V.slope_row(
                    f"{tag}: {claim}", xs, y, predicted, stat=stat, kind=kind, blocker=blocker, id=cid,
                    extra="; ".join(filter(None, (_oracle_note(rate, s, L, metric, stat, cfg), extra)))),
                    controls=(f"{cid}-control",)))
                rows.append(V.control_row(f"{tag}: {claim}", xs, y, predicted, stat=stat, kind=kind, wrong=wrong,
                                          id=f"{cid}-control", control_of=cid))

            if L == L_STAR:
                add("Voronoi loss ~ n^-1/2", "voronoi", -0.5)
                add("parameter error (singleton cells) ~ n^-1/2", "singleton_error", -0.5)
            else:
                if s != "nonshared":
                    add("E Voronoi loss ~ n^-1/2", "voronoi", -0.5, stat="mean")
                    add("singleton-cell error ~ n^-1/2", "singleton_error", -0.5)
                for claim, metric, stat, pred, kind, wrong in (NONSHARED_MERGED if s == "nonshared" else SHARED_MERGED):
                    add(claim, metric, pred, stat=stat, kind=kind, extra=shape, wrong=wrong)
                if cfg.bound_alt > 0:
                    rows.append(_bound_row(rate, s, L, cfg.bound, cfg.bound_alt, tag))
            add("||f_hat - f*||_L2 ~ n^-1/2", "l2_error", -0.5)
    for L in sorted(L for st, L in present if st == "shared_linear" and ("nonshared", L) in present and L > L_STAR):
        rows.append(_efficiency_row(rate, L, cfg.bound))
    return rows + _extra_verdict(cfg, results)


def _oracle_note(rate, s, L, metric, stat, cfg):
    """The same slope from the diagnostic start near the truth alone (the estimator before multi-start)."""
    if not cfg.oracle_start:
        return ""
    fit = V.slope(*V.table(rate, s, L, f"oracle_{metric}", bound=cfg.bound), stat)
    return f"start near the truth alone: {V.measured(fit)}" if fit is not None else ""


def _bound_row(results, s, L, bound, alt, tag):
    """The merged-cell second moment's slope at ``alt`` agrees with the one at ``bound``."""
    claim = f"{tag}: merged-cell sum w||Delta||^2 slope independent of bound ({bound:g} vs {alt:g})"
    pred = "|slope(b) - slope(b')| within the two CIs' half-widths combined"
    fits = [V.slope(*V.table(results, s, L, "merged_m2", bound=b), "mean") for b in (bound, alt)]
    if None in fits:
        return VerdictRow.undecided(claim, pred, "no slope", "needs both bounds on >= 2 n_eff values")
    a, b = fits
    gap, half = abs(a.slope - b.slope), (a.high - a.low) / 2 + (b.high - b.low) / 2
    measured = f"{a.slope:.3f} [{a.low:.3f}, {a.high:.3f}] vs {b.slope:.3f} [{b.low:.3f}, {b.high:.3f}]"
    return VerdictRow(claim, pred, measured, bool(gap <= half), f"difference {gap:.3f}, allowed {half:.3f}",
                      id=f"{s}-L{L}-bound", estimate=gap, low=gap, high=gap, target=0.0, tol=half, relation="within",
                      quantity="|slope at bound - slope at bound_alt| of the mean merged_m2",
                      tol_why="the two slopes' 95% half-widths combined (independent data at the two bounds)")


def _efficiency_row(results, L, bound):
    """Shared vs non-shared at the same f*: RMS merged-cell error in (p^K, p^V) space, ratio > 1."""
    claim = f"shared_linear vs nonshared L={L} (same f*): merged-cell (p^K, p^V) error smaller when shared"
    xs, y_sh = V.table(results, "shared_linear", L, "kv_merged_error", bound=bound)
    xs2, y_ns = V.table(results, "nonshared", L, "kv_merged_error", bound=bound)
    if xs != xs2 or not xs:
        return VerdictRow.undecided(claim, "RMS ratio nonshared/shared > 1", "no ratio",
                                    "needs both structures on the same n_eff grid")
    return V.ratio_row(claim, y_ns[-1], y_sh[-1], where=f" at n_eff={xs[-1]:.3g}", id=f"efficiency-L{L}")


# Cells whose "kind" is not "rate" (the identifiability modulus and the two-point pairs, added by
# --quick) are those of sims.experiments.reparam_identifiability: its quick_cells(cfg),
# run(cell, *, key) and verdict(cfg, results).


def _extra_module(kind):
    if kind not in _identifiability.KINDS:
        known = ", ".join(sorted(_identifiability.KINDS))
        raise ValueError(f"unknown reparam cell kind {kind!r}; known: rate, {known}")
    return _identifiability


def _extra_cells(cfg) -> list[dict]:
    return _identifiability.quick_cells(cfg)


def _extra_verdict(cfg, results) -> list[VerdictRow]:
    return _identifiability.verdict(cfg, results)


EXPERIMENT = register(Experiment(
    name="reparam",
    summary="Prefix-tuning as an MoE: Voronoi-loss rates of shared vs non-shared prompts (spec 5, paper 2).",
    config=ReparamConfig,
    cells=cells,
    run=run,
    verdict=verdict,
    estimate_bytes=estimate_bytes,
    sweep_fields=("structures", "n_eff", "extra"),
    check=lambda cfg: need_distinct("n_eff", cfg.grid(), hint="give several different --n-eff"),
    examples=(
        "sims run reparam --quick",
        "sims run reparam --structures shared_linear --structures nonshared --extra 1 --bound-alt 10",
        "sims run reparam --no-trade-noise --n-eff 1000 --n-eff 10000 --n-eff 100000",
    ),
))
