"""Benchmarks (``make bench`` → ``benchmarks/run.py``). Not part of the installed package."""
