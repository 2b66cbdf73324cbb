"""Benchmarks: `python -m bench` (or `make bench`); each module also runs alone."""
