"""Benchmarks: each module runs with ``python -m benchmarks.NAME`` and updates BENCHMARKS.md."""
