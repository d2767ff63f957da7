"""``resrl/WebShop-v0``: a re-implementation of WebShop on a generated catalogue (see README.md).

This package imports nothing: ``import envs`` reads ``spec.py`` of every env, and an env's dependencies load
only when the env is made (``spec.entry_point``).
"""
