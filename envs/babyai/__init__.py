"""``resrl/BabyAI-v0``: minigrid's BabyAI levels as a text game (see envs/babyai/README.md).

``envs.babyai.actions`` and ``envs.babyai.prompts`` import no minigrid (every env's corpus texts run when the tiny
model is built), so this package imports ``env`` (and minigrid) only when ``BabyAIEnv`` is asked for.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BabyAIEnv"]


def __getattr__(name: str) -> Any:
    if name == "BabyAIEnv":
        from envs.babyai.env import BabyAIEnv

        return BabyAIEnv
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
