"""Benchmarks against named peers, run by ``make bench`` (``python benchmarks/run.py``)."""
