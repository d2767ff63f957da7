"""``resrl/Math-v0``: single-turn verifiable math, answers in ``\\boxed{}`` checked with math-verify."""

from envs.math.env import MathEnv

__all__ = ["MathEnv"]
