"""``resrl/ALFWorld-v0``: the real alfworld TextWorld engine on games the project generates (see README.md)."""

from envs.alfworld.env import AlfworldConfig, AlfworldEnv
from envs.alfworld.vector import AlfworldVectorEnv, EnvResult

__all__ = ["AlfworldConfig", "AlfworldEnv", "AlfworldVectorEnv", "EnvResult"]
