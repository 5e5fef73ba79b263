"""Simulations for prefix-ntk: experiments (pure), the results store and the ``sims`` CLI.

:func:`context` is the run context (:mod:`sims.runtime`): precision, compile cache, signals and
allocator, set for a block and restored after.
"""

from sims.runtime import context

__all__ = ["context"]
