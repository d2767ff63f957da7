"""``resrl/FunctionCalling-v0``: multi-turn function calling over BFCL-compatible backends (tools.bfcl)."""

from envs.function_calling.env import FunctionCallingEnv

__all__ = ["FunctionCallingEnv"]
