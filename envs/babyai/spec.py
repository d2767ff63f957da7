"""``resrl/BabyAI-v0``: minigrid's BabyAI levels as a text game."""

from envs.spec import EnvSpec

SPEC = EnvSpec(id="resrl/BabyAI-v0", entry_point="envs.babyai.env:BabyAIEnv", example_kwargs={"level": "GoToLocal"})
