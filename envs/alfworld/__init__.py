"""``resrl/ALFWorld-v0``: the real alfworld TextWorld engine on games the project generates (see README.md).

This package imports nothing: ``import envs`` reads ``spec.py`` of every env, and an env's dependencies load
only when the env is made (``spec.entry_point``).
"""
