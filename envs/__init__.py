"""Environments: one folder per env, each describing itself in ``envs/<name>/spec.py`` (:class:`envs.spec.EnvSpec`).

``import envs`` collects the specs (the built-in ones and those of installed plugins, entry point group
``resrl_agent.envs``) and registers every id with gymnasium, lazily: ``gymnasium.make("resrl/Echo-v0")`` then
imports the env module on demand. Adding an env: docs/adding-an-env.md.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from envs.base import EnvError, Parsed, TextEnv, register
from envs.spec import EnvSpec, discover_specs

__all__ = [
    "SPECS",
    "EnvError",
    "EnvSpec",
    "Parsed",
    "TextEnv",
    "action_parser",
    "env_class",
    "env_ids",
    "load_module",
    "spec",
]

SPECS: dict[str, EnvSpec] = discover_specs()  # env id -> its spec
for _spec in SPECS.values():
    register(_spec.id, _spec.entry_point)


def env_ids() -> list[str]:
    """Every registered env id (built-in and plugins)."""
    return sorted(SPECS)


def _unknown(env_id: str) -> EnvError:
    return EnvError(f"unknown env id {env_id!r}", hint=f"registered ids: {', '.join(env_ids())}")


def spec(env_id: str) -> EnvSpec:
    """The spec of a registered env id; an EnvError that lists the registered ids otherwise."""
    try:
        return SPECS[env_id]
    except KeyError:
        raise _unknown(env_id) from None


def env_class(env_id: str) -> Any:
    """The class behind a gymnasium id (its module is imported): registered here, or by anyone with gymnasium."""
    import gymnasium as gym

    try:
        entry = gym.spec(env_id).entry_point
    except gym.error.Error:
        raise _unknown(env_id) from None
    if isinstance(entry, str):
        module, _, name = entry.partition(":")
        return getattr(importlib.import_module(module), name)
    return entry


def load_module(env_id: str, part: str) -> Any:
    """Import the env's ``actions`` or ``prompts`` module (``<spec.package>.<part>``)."""
    return importlib.import_module(f"{spec(env_id).package}.{part}")


def action_parser(env_id: str) -> Callable[[str], Parsed]:
    """The env's pure ``parse_action(text) -> Parsed`` (Contract 2)."""
    parser: Callable[[str], Parsed] = load_module(env_id, "actions").parse_action
    return parser
