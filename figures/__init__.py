"""Figures: one module per figure, each reading saved results only (never simulating).

``python -m figures`` builds them all from stored runs (:mod:`figures.cli`; ``sims figures``
runs the missing simulations first, then calls :func:`figures.cli.build_all`);
``python -m figures.<name>`` builds one.  The shared style and the reproducible output live in :mod:`figures.style`, the list of
figures in :mod:`figures.registry`.
"""

from figures.registry import FIGURES

__all__ = ["FIGURES"]
