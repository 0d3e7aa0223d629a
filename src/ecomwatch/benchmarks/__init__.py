"""Benchmark harnesses: each prints one JSON line with a baseline measured in the same run."""
