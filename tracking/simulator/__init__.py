"""Synthetic world, GeoIP database builder and labelled traffic simulator.

Shipped with the app: the demo, ``tracking demo``, the benchmarks and the tests use it.
"""
