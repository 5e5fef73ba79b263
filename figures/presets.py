"""The run sizes the figures read: :mod:`sims.experiments.presets` (where they are defined and run)."""

from sims.experiments.presets import COMPANIONS, SMALL, companion_configs, config  # noqa: F401

__all__ = ["SMALL", "COMPANIONS", "config", "companion_configs"]
