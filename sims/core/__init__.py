"""The engine: the experiment contract, planning and executing runs, the results store, provenance, verdict helpers."""
