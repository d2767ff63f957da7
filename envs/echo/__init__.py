"""``resrl/Echo-v0``: a trivial env that echoes the action, for tests, smoke runs and server benchmarks.

This package imports nothing: ``import envs`` reads ``spec.py`` of every env, and an env's dependencies load
only when the env is made (``spec.entry_point``).
"""
