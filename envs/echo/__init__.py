"""``resrl/Echo-v0``: a trivial env that echoes the action, for tests, smoke runs and server benchmarks."""

from envs.echo.env import EchoEnv

__all__ = ["EchoEnv"]
