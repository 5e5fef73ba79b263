"""Figures: one module per figure, each reading saved results only (never simulating).

``python -m figures`` or ``sims figures`` builds them all (running the simulations they need
first when results are missing, see :mod:`figures.cli`); ``python -m figures.<name>`` builds
one.  The shared style and the reproducible output live in :mod:`figures.style`, the list of
figures in :mod:`figures.registry`.
"""

from figures.registry import FIGURES

__all__ = ["FIGURES"]
