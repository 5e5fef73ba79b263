"""Benchmarks (`sims bench`) and the neural-tangents adapter they and the cross-check tests use."""
