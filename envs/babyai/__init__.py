"""``resrl/BabyAI-v0``: minigrid's BabyAI levels as a text game (see envs/babyai/README.md).

This package imports nothing: ``import envs`` reads ``spec.py`` of every env, and an env's dependencies load
only when the env is made (``spec.entry_point``).
"""
