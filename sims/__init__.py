"""Simulations for prefix-ntk: experiments (pure), the results store and the ``sims`` CLI."""
