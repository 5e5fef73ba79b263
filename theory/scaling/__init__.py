"""Scaling over prefix rows: sharding over devices and memory planning (row reductions: :mod:`theory.streaming`)."""
