"""Scaling over prefix rows: streaming reductions, sharding over devices, memory planning."""
