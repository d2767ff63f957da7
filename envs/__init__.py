"""Environments: one folder per env; every env id is registered with gymnasium here, lazily.

``import envs`` registers the ids; ``gymnasium.make("resrl/Echo-v0")`` then imports the env module on demand.
Add an env: create ``envs/<name>/`` (env.py, actions.py, prompts.py) and add one ``register`` line below.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from envs.base import EnvError, Parsed, TextEnv, register

__all__ = ["ENV_MODULES", "EnvError", "Parsed", "TextEnv", "env_ids", "load_module", "register"]

# env id -> the package holding env.py, actions.py and prompts.py
ENV_MODULES: dict[str, str] = {
    "resrl/Echo-v0": "envs.echo",
    "resrl/ALFWorld-v0": "envs.alfworld",
    "resrl/FunctionCalling-v0": "envs.function_calling",
    "resrl/WebShop-v0": "envs.webshop",
    "resrl/Math-v0": "envs.math",
    "resrl/BabyAI-v0": "envs.babyai",
}

register("resrl/Echo-v0", "envs.echo.env:EchoEnv")
register("resrl/ALFWorld-v0", "envs.alfworld.env:AlfworldEnv")
register("resrl/FunctionCalling-v0", "envs.function_calling.env:FunctionCallingEnv")
register("resrl/WebShop-v0", "envs.webshop.env:WebShopEnv")
register("resrl/Math-v0", "envs.math.env:MathEnv")
register("resrl/BabyAI-v0", "envs.babyai.env:BabyAIEnv")


def env_ids() -> list[str]:
    """Every env id this package registers."""
    return sorted(ENV_MODULES)


def load_module(env_id: str, part: str) -> Any:
    """Import ``envs.<name>.<part>`` (``actions``, ``prompts``) for a registered env id."""
    try:
        package = ENV_MODULES[env_id]
    except KeyError:
        raise EnvError(f"unknown env id {env_id!r}", hint=f"registered ids: {', '.join(env_ids())}") from None
    return importlib.import_module(f"{package}.{part}")


def action_parser(env_id: str) -> Callable[[str], Parsed]:
    """The env's pure ``parse_action(text) -> Parsed`` (Contract 2)."""
    parser: Callable[[str], Parsed] = load_module(env_id, "actions").parse_action
    return parser
