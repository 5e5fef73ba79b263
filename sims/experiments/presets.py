"""Named run sizes, and running them: each experiment's defaults (``sims run NAME``), or small ones.

``SMALL`` holds config overrides that run in seconds to a minute on a laptop CPU each and
still let the claims show (``sims figures --small``; the test suite uses them too).  The
notebooks' small settings are the same numbers, so a results folder serves both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import sims.core as engine
from sims.experiments import get

__all__ = ["SMALL", "COMPANIONS", "config", "companion_configs", "ensure_results"]

SMALL: dict[str, dict[str, Any]] = {
    "convergence": dict(m=(4000,), ladder=3, n=6, d=8, steps=40, log_every=20, seeds=3),
    "kernel": dict(m=(500, 2000, 8000), n=5, d=6, seeds=4),
    "ntk-attention-error": dict(m=(16, 256), beta=(1.0, 2.0), L=4, g_max=6, seeds=2),
    "ntk-attention-train": dict(m=(16, 1024), d=4, L=8, steps=3000, val_size=32, lr=1e-2, scale_by_m=True),
    "ntk-attention-cost": dict(m=(16, 256, 4096), d=8, L=16, repeats=2),
    "reparam": dict(structures=("shared_linear", "nonshared"), extra=(1,), n_eff=(10_000, 1_000_000, 100_000_000),
                    n=200, replications=4, split_starts=1, random_starts=1, polish_steps=300),
    "reparam-identifiability": dict(quick=True),
    "lazy-prefix": dict(quick=True, m=(2, 8, 32), seeds=2, p=3, T=4, d=8, layers=1, heads=2, d_mlp=8, n=6,
                        n_test=16, steps=10, log_every=5, pretrain_steps=100),
}


#: Further small runs the notebooks show beside the ones above (notebook 5 compares the paper's
#: parametrization, scale 1, with the scaled one); ``ensure_results(...,
#: companions=True)`` runs them right after their experiment, while its compiled code is warm.
COMPANIONS: dict[str, list[dict[str, Any]]] = {
    "ntk-attention-train": [dict(SMALL["ntk-attention-train"], scale_by_m=False)],
}


def config(experiment: str, *, small: bool = False):
    """The config a figure asks for: the experiment's defaults, or ``SMALL`` applied to them."""
    exp = get(experiment)
    return exp.config(**SMALL.get(experiment, {})) if small else exp.config()


def companion_configs(experiment: str) -> list:
    """The extra configs run beside ``experiment``'s default (:data:`COMPANIONS`), as config objects."""
    exp = get(experiment)
    return [exp.config(**kw) for kw in COMPANIONS.get(experiment, [])]


def ensure_results(results: str | Path, experiments, *, small: bool = False, precision: str = "float64",
                   companions: bool = False, on_event: Callable[[Any], None] | None = None) -> dict[str, str]:
    """Run (or reuse, cell by cell) the requested config of each experiment into ``results``.

    Args:
        results: the results folder.
        experiments: experiment names.
        small: run :data:`SMALL` sizes instead of the defaults.
        precision: ``"float64"`` (the caller enables ``jax_enable_x64``) or ``"float32"``.
        companions: with ``small``, also run :data:`COMPANIONS` right after their experiment.
        on_event: passed to :func:`sims.core.execution.execute` (progress).

    Returns:
        ``{experiment: run_id}`` of the requested configs.
    """
    out = {}
    for name in experiments:
        exp = get(name)
        out[name] = engine.run(exp, config(name, small=small), out=results, precision=precision,
                               on_event=on_event).run_id
        for cfg in companion_configs(name) if (small and companions) else []:
            engine.run(exp, cfg, out=results, precision=precision, on_event=on_event)
    return out
