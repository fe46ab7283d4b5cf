"""Benchmarks against named peers, run by ``make bench`` (``python -m benchmarks.run``)."""
