"""Benchmarks: each stage against a lower bound in the same run (`python -m benchmarks.run`)."""
