"""Experiment modules; importing this package registers each of them (see sims.core.experiment)."""

import importlib

_MODULES = [
    "convergence",
    "kernel",
    "ntk_attention_cost",
    "ntk_attention_error",
    "ntk_attention_train",
    "reparam",
    "reparam_identifiability",
]

for _name in _MODULES:
    importlib.import_module(f"sims.experiments.{_name}")
