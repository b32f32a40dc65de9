"""Reproducible benchmarks: each measures us and named peers side by side, in one run."""
