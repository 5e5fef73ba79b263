"""The claims table of the README, as data: what ``sims reproduce`` runs and the report cites.

One :class:`Entry` per experiment of the README's claims table, in its order.  Sizes:

- ``quick`` (``sims reproduce``, the default), :data:`QUICK`: an experiment's own quick size
  where it has one (``--quick``: ``reparam``, ``reparam-identifiability``, ``lazy-prefix``, as
  the README's claims table runs them), else the small preset
  (:data:`sims.experiments.presets.SMALL`, the sizes ``sims figures --small`` and the notebooks
  use).  Claims that need a larger size to be decided come out "undecided", with the size that
  would decide them.  (The small preset of ``lazy-prefix``, m <= 32 and 10 tuning steps, is a
  plotting size outside the long-prefix regime its claims are about: docs/report.md.)
- ``full`` (``sims reproduce --full``): the papers' sizes, i.e. each experiment's defaults, and
  the README's main job (``convergence`` at m = 1e5).  Hours on a CPU.

The run of a size is the experiment's config with those overrides, so its run id is the one
``sims run`` with the same options gives, and stored cells are shared with it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from sims.experiments.presets import SMALL

__all__ = ["Entry", "CATALOG", "SIZES", "PAPERS", "QUICK", "entry", "overrides"]

SIZES = ("quick", "full")

#: Group label of each paper (the summary counts claims per group).
PAPERS = {
    "1": "Paper 1: Towards Infinite-Long Prefix in Transformer (arXiv 2406.14036)",
    "2": "Paper 2: Revisiting Prefix-tuning: Statistical Benefits of Reparameterization among Prompts (arXiv 2410.02200)",
    "1+2": "Both papers, on a small pre-trained transformer (docs/lazy_prefix.md)",
    "other": "Other experiments",
}


@dataclasses.dataclass(frozen=True)
class Entry:
    """One claim of the report: its experiment, paper, section and document, the README's statement and sizes."""

    experiment: str
    paper: str  # a key of PAPERS
    section: str  # the section of docs/theory.md, number and title (lazy-prefix: its own document)
    doc: str  # the document and anchor the section is in
    statement: str  # the README's row
    full: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: Relative wall time of its quick size (the cold reproduction's manifests, docs/performance.md):
    #: ``sims reproduce --jobs N`` starts the longest first.  It orders the work, nothing else.
    cost: int = 1
    #: Its rows measure the machine's speed: ``sims reproduce`` runs it alone, after the others.
    timed: bool = False


CATALOG: tuple[Entry, ...] = (
    Entry("kernel", "1", "2.1 The convergence claims, as measurements", "docs/theory.md#21-the-convergence-claims-as-measurements",
          "The empirical NTK of a long prefix concentrates around its limit H* at rate m^-1/2; "
          "lambda_min(H(0)) >= lambda/2", cost=38),
    Entry("convergence", "1", "2.1 The convergence claims, as measurements", "docs/theory.md#21-the-convergence-claims-as-measurements",
          "Gradient descent converges linearly, rows move O(m^-1/2), training follows kernel regression "
          "with H*; a mean-field control fails", full={"m": (100000,)}, cost=63),
    Entry("ntk-attention-error", "1", "4 NTK-Attention (paper 1's algorithm)", "docs/theory.md#4-ntk-attention-paper-1s-algorithm",
          "NTK-Attention replaces an infinite prefix by r d + r numbers within the derived bound", cost=72),
    Entry("ntk-attention-train", "1", "4 NTK-Attention (paper 1's algorithm)", "docs/theory.md#4-ntk-attention-paper-1s-algorithm",
          "Trained NTK-Attention summaries against m, paper 1's section 4.4 rebuilt", cost=92),
    Entry("ntk-attention-cost", "1", "4 NTK-Attention (paper 1's algorithm)", "docs/theory.md#4-ntk-attention-paper-1s-algorithm",
          "Time and memory of prefix attention against NTK-Attention, and their crossover m", cost=42, timed=True),
    Entry("reparam-identifiability", "2", "5 Paper 2: prefix-tuning as a mixture of experts", "docs/theory.md#5-paper-2-prefix-tuning-as-a-mixture-of-experts",
          "Shared (reparameterised) prompts are identifiable where non-shared ones are not: the modulus "
          "||f_G - f*|| / D(G, G*) and a two-point test", cost=250),
    Entry("reparam", "2", "5 Paper 2: prefix-tuning as a mixture of experts", "docs/theory.md#5-paper-2-prefix-tuning-as-a-mixture-of-experts",
          "Fixed-truth estimation rates in n for the four prompt structures", cost=617),
    Entry("lazy-prefix", "1+2", "How lazy is prefix-tuning in a real transformer?", "docs/lazy_prefix.md",
          "How lazy prefix-tuning of a small pre-trained transformer is, against m", cost=2083),
)


#: The quick size of each experiment of the catalog (config overrides).
QUICK: dict[str, dict[str, Any]] = {
    "kernel": SMALL["kernel"],
    "convergence": SMALL["convergence"],
    "ntk-attention-error": SMALL["ntk-attention-error"],
    "ntk-attention-train": SMALL["ntk-attention-train"],
    "ntk-attention-cost": SMALL["ntk-attention-cost"],
    "reparam-identifiability": {"quick": True},
    "reparam": {"quick": True},
    "lazy-prefix": {"quick": True},
}


def entry(experiment: str) -> Entry | None:
    """The catalog entry of ``experiment`` (None for an experiment outside the claims table)."""
    return next((e for e in CATALOG if e.experiment == experiment), None)


def overrides(experiment: str, size: str) -> dict[str, Any]:
    """The config fields ``size`` ("quick" or "full") sets for ``experiment`` (the rest: defaults).

    Raises:
        ValueError: an unknown size or an experiment outside the catalog.
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    e = entry(experiment)
    if e is None:
        raise ValueError(f"{experiment!r} is not in the claims table; known: {', '.join(x.experiment for x in CATALOG)}")
    return dict(QUICK.get(experiment, {})) if size == "quick" else dict(e.full)
