"""``resrl/Math-v0``: single-turn verifiable math, answers in ``\\boxed{}`` checked with math-verify.

This package imports nothing: ``import envs`` reads ``spec.py`` of every env, and an env's dependencies load
only when the env is made (``spec.entry_point``).
"""
