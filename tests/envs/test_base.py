"""The env contract: text spaces, stable anchors, info checks, lazy registration, and the Echo env."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.base import EnvError, Parsed, TextSpace, anchor_key, check_info, register
from envs.echo.actions import parse_action


def test_anchor_key_is_stable_across_processes() -> None:
    key = anchor_key("task-1", "You are in the kitchen.")
    code = "from envs.base import anchor_key; print(anchor_key('task-1', 'You are in the kitchen.'))"
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": "123"}
    ).stdout.strip()
    assert key == other  # the same value in a process with another hash seed
    assert key == "5d95dcafec35a435d443b311"  # pinned: a change would silently regroup saved runs' step groups
    assert anchor_key("task-2", "You are in the kitchen.") != key
    assert anchor_key("task-1", "You are in the hall.") != key


def test_text_space_accepts_any_unicode_up_to_max_length() -> None:
    space = TextSpace(8, seed=0)
    assert space.contains("naïve ✓") and not space.contains("x" * 9) and not space.contains(3)
    samples = [space.sample() for _ in range(50)]
    assert all(space.contains(s) for s in samples)
    assert any(set(s) & set("[]{}\"' ") for s in samples)  # punctuation is exercised, not only alphanumerics


def test_check_info() -> None:
    check_info({"anchor": "k", "action_valid": True, "won": False, "task_id": "t", "available_actions": ["a"]})
    with pytest.raises(EnvError, match=r"lacks required key\(s\) \['won'\]"):
        check_info({"anchor": "k", "action_valid": True, "task_id": "t"})
    with pytest.raises(EnvError, match="must be a bool"):
        check_info({"anchor": "k", "action_valid": 1, "won": False, "task_id": "t"})


def test_registration_is_lazy_and_idempotent() -> None:
    assert "resrl/Echo-v0" in envs.env_ids()
    register("resrl/Echo-v0", "envs.echo.env:EchoEnv")  # the same again: fine
    with pytest.raises(EnvError, match="already registered"):
        register("resrl/Echo-v0", "envs.other:Other")
    with pytest.raises(EnvError, match="unknown env id 'resrl/Nope-v0'"):
        envs.load_module("resrl/Nope-v0", "actions")


def test_parsed_contract() -> None:
    with pytest.raises(ValueError, match="needs an action"):
        Parsed(None, True)
    assert parse_action("I say <action> lamp </action>") == Parsed("lamp", True, "")
    assert not parse_action("   ").format_valid


def test_echo_env_passes_check_env_and_plays_a_known_episode() -> None:
    env = gym.make("resrl/Echo-v0", max_steps=3)
    check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=0, options={"task_id": "echo-2"})
    assert obs == "Say the word: lamp" and info["expert_action"] == "lamp" and info["task_id"] == "echo-2"
    check_info(info)
    obs, reward, terminated, truncated, info = env.step("stone")
    assert (obs, reward, terminated, truncated, info["won"]) == ("You said: stone", 0.0, False, False, False)
    obs, reward, terminated, truncated, info = env.step("lamp")
    assert (reward, terminated, truncated, info["won"]) == (1.0, True, False, True)
    with pytest.raises(EnvError, match="finished episode"):
        env.step("again")
    with pytest.raises(EnvError, match="unknown task_id 'banana'"):
        env.reset(options={"task_id": "banana"})
    env.reset(options={"task_id": "echo-0"})
    for _ in range(2):
        assert env.step("x")[3] is False
    assert env.step("x")[3] is True  # truncated at max_steps


def test_one_info_json_rule_for_local_and_remote_runs() -> None:
    """The env server encodes infos with ``info_json_default``; a local rollout stores ``jsonable_info``: the same
    values either way (numpy scalars and arrays as numbers and lists, sets sorted, other objects as their str)."""
    import json

    import numpy as np

    from envs.base import info_json_default, jsonable_info
    from servers.workers import _dumps

    class Door:
        def __str__(self) -> str:
            return "a red door"

    info = {"score": np.float32(0.5), "pos": np.array([1, 2]), "n": np.int64(3), "seen": {"b", "a"}, "obj": Door()}
    local = jsonable_info(info)
    assert local == {"score": 0.5, "pos": [1, 2], "n": 3, "seen": ["a", "b"], "obj": "a red door"}
    assert json.loads(_dumps({"info": info}))["info"] == local
    assert json.loads(json.dumps(info, default=info_json_default)) == local
    with pytest.raises(EnvError, match="cannot be stored as JSON"):
        jsonable_info({"k": {(1, 2): "tuple key"}})
