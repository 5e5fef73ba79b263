"""The experiments, one module each, found by name: importing this package loads none of them.

:data:`MODULES` maps each experiment's name to the module that defines (and registers, see
:mod:`sims.core.experiment`) it; :func:`get` imports that module on first use, so a command
loads only the experiments it runs or describes (``sims run convergence`` imports
:mod:`sims.experiments.convergence` and not the others).  Each module's own experiment is
``sims.experiments.<module>.EXPERIMENT``.
"""

from __future__ import annotations

import importlib

from sims.core import experiment as registry

__all__ = ["MODULES", "get", "names", "load_all"]

#: Every project experiment's name -> its module (tests check that each module registers these names).
MODULES: dict[str, str] = {
    "convergence": "sims.experiments.convergence",
    "kernel": "sims.experiments.kernel",
    "lazy-prefix": "sims.experiments.lazy_prefix",
    "ntk-attention-cost": "sims.experiments.ntk_attention_cost",
    "ntk-attention-error": "sims.experiments.ntk_attention_error",
    "ntk-attention-train": "sims.experiments.ntk_attention_train",
    "reparam": "sims.experiments.reparam",
    "reparam-identifiability": "sims.experiments.reparam_identifiability",
    "reparam-modulus": "sims.experiments.reparam_identifiability",
}


def get(name: str) -> registry.Experiment:
    """The experiment ``name``: a project one (its module imported now if needed), or any other registered one.

    Raises:
        KeyError: unknown name (the message lists the known ones).
    """
    if name not in registry.REGISTRY and name in MODULES:
        importlib.import_module(MODULES[name])
    if name not in registry.REGISTRY:
        raise KeyError(f"unknown experiment {name!r}; known: {', '.join(names())}")
    return registry.REGISTRY[name]


def names() -> list[str]:
    """Every experiment's name, sorted: the project's (:data:`MODULES`, imported or not) and any other registered one."""
    return sorted({*MODULES, *registry.REGISTRY})


def load_all() -> tuple[registry.Experiment, ...]:
    """The project's experiments, each module imported, in :data:`MODULES` order."""
    return tuple(get(n) for n in MODULES)
