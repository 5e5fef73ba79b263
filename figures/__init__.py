"""Figures: one module per figure, each reading saved results only (never simulating).

``sims figures`` (:mod:`sims.cli.figures`; ``python -m figures`` is the same command) builds
them from stored runs, running the missing simulations first; :mod:`figures.build` selects the
run each figure reads.  The shared style and the reproducible output live in
:mod:`figures.style`.  Each figure module defines EXPERIMENT, NAME, DEFAULT_WIDTH and
``plot(run, *, venue, width)``.
"""

#: The figures ``sims figures`` builds, in build order.
FIGURES = (
    "convergence",
    "kernel",
    "ntk_attention_error",
    "ntk_attention_train",
    "ntk_attention_cost",
    "reparam",
    "lazy_prefix",
    "reparam_identifiability",
)

#: Figures built only when named (``--only``): they read a benchmark file, not a simulation to rerun.
ON_REQUEST = ("bench_suite",)

__all__ = ["FIGURES", "ON_REQUEST"]
