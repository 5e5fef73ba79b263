"""The experiments, one module each; importing this package registers them (see sims.core.experiment).

``ALL`` holds their :class:`sims.core.experiment.Experiment` objects in this order; each module's
own is ``sims.experiments.<module>.EXPERIMENT`` (e.g. ``sims run convergence`` runs
:data:`sims.experiments.convergence.EXPERIMENT`).
"""

from sims.core import experiment as registry
from sims.experiments import (
    convergence,
    kernel,
    lazy_prefix,
    ntk_attention_cost,
    ntk_attention_error,
    ntk_attention_train,
    reparam,
    reparam_identifiability,
)

ALL = (
    convergence.EXPERIMENT,
    kernel.EXPERIMENT,
    lazy_prefix.EXPERIMENT,
    ntk_attention_cost.EXPERIMENT,
    ntk_attention_error.EXPERIMENT,
    ntk_attention_train.EXPERIMENT,
    reparam.EXPERIMENT,
    reparam_identifiability.EXPERIMENT,
    reparam_identifiability.MODULUS_EXPERIMENT,
)

__all__ = ["ALL", "get", "names"]


def get(name: str):
    """The experiment ``name``: one of :data:`ALL`, or any other registered one (a test's toy).

    Raises:
        KeyError: unknown name (the message lists the known ones).
    """
    return registry.get(name)


def names() -> list[str]:
    """Every registered experiment's name, sorted (:data:`ALL` and any other registered one)."""
    return registry.names()
