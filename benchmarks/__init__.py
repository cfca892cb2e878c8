"""The sections of benchmark.py, one module per theme."""
