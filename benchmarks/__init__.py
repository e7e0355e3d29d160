"""Benchmarks: `make bench` (throughput.py). Results go to benchmarks/RESULTS.md."""
