"""``resrl/FunctionCalling-v0``: multi-turn function calling over BFCL-compatible backends (tools.bfcl).

This package imports nothing: ``import envs`` reads ``spec.py`` of every env, and an env's dependencies load
only when the env is made (``spec.entry_point``).
"""
