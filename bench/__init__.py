"""Benchmark harness: a local feed farm, baseline clients and the service (``python -m bench``)."""
