"""The estimator registry, and the built-in estimators read from a collated Batch against hand-computed numbers."""

from __future__ import annotations

import math

import pytest
import torch

from resrl_agent.algorithms import estimators
from resrl_agent.algorithms.estimators import TurnAdvantages, estimator_names, get_estimator, register_estimator
from resrl_agent.config import RunConfig, load_config
from resrl_agent.errors import ConfigError
from resrl_agent.types import Batch, Episode, Turn, collate

EPS = 1e-6


@pytest.fixture()
def registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A private copy of the registry: what a test registers is gone after it."""
    monkeypatch.setattr(estimators, "_ESTIMATORS", dict(estimators._ESTIMATORS))


def _episode(rewards: list[float], anchors: list[str], *, group: str = "g", invalid: tuple[int, ...] = ()) -> Episode:
    turns = []
    for k, (reward, anchor) in enumerate(zip(rewards, anchors, strict=True)):
        parsed = k not in invalid
        turns.append(
            Turn(
                prompt_ids=[1, 2],
                response_ids=[3, 4, 5][: k + 1],
                response_logprobs=[-0.5] * (k + 1),
                reward=reward,
                anchor=anchor,
                format_valid=parsed,
                action_valid=parsed,
            )
        )
    return Episode(task_id="t", group_id=group, sample_idx=0, env_id="e", turns=turns)


def test_the_built_in_estimators_are_registered_by_name() -> None:
    assert estimator_names() == ("dapo", "gigpo", "grpo", "nsr", "psr", "w_reinforce")
    with pytest.raises(ConfigError, match=r"no advantage estimator named 'ppo'; registered: dapo, gigpo, grpo, nsr"):
        get_estimator("ppo")


def test_a_name_is_registered_once_unless_replaced(registry: None) -> None:
    def mine(batch: Batch, config: RunConfig, /) -> tuple[TurnAdvantages, dict[str, float]]:
        values = torch.zeros(batch.num_turns)
        return TurnAdvantages(values, torch.ones_like(values, dtype=torch.bool)), {}

    with pytest.raises(ValueError, match="'grpo' is registered already"):
        register_estimator("grpo")(mine)
    assert register_estimator("grpo", replace=True)(mine) is mine and get_estimator("grpo") is mine
    register_estimator("mine")(mine)
    assert "mine" in estimator_names()
    assert load_config(None, ["algo.advantage=mine"]).algo.advantage == "mine"  # the config accepts the new name


def test_gigpo_reads_the_batch_turn_table_by_hand() -> None:
    # test_gigpo's examples, now as collated episodes. A = [0, 1], B = [0, 0], both on s0 then s1; gamma 0.5,
    # norm "mean": A = [0.75, 1.0], B = [-0.75, -1.0].
    config = load_config(None, ["algo.advantage=gigpo", "algo.gigpo.gamma=0.5", "algo.gigpo.norm=mean"])
    for mode in ("concat", "window"):
        batch = collate([_episode([0, 1], ["s0", "s1"]), _episode([0, 0], ["s0", "s1"])], mode)
        adv, metrics = get_estimator("gigpo")(batch, config)
        torch.testing.assert_close(adv.values, torch.tensor([0.75, 1.0, -0.75, -1.0]), rtol=0, atol=1e-7)
        assert adv.keep.all() and metrics == {"gigpo/anchor_group_size_mean": 2.0, "gigpo/singleton_anchor_frac": 0.0}
    # The invalid-action penalty from the batch's format flags: A = [0, 1] on x, y with step 0 unparsed, B = [0, 0]
    # on x, z: A = [0.625, 0.525], B = [-0.675, -0.475].
    batch = collate([_episode([0, 1], ["x", "y"], invalid=(0,)), _episode([0, 0], ["x", "z"])], "concat")
    adv, metrics = get_estimator("gigpo")(batch, config)
    torch.testing.assert_close(adv.values, torch.tensor([0.625, 0.525, -0.675, -0.475]), rtol=0, atol=1e-7)
    assert metrics["gigpo/singleton_anchor_frac"] == 2 / 3  # x is shared; y and z are alone


def test_outcome_estimators_read_the_episode_returns_by_hand() -> None:
    # One group of two one-turn episodes with returns 1 and 0, and a second group of one episode with return 1.
    episodes = [_episode([1.0], ["a"]), _episode([0.0], ["a"]), _episode([1.0], ["a"], group="h")]
    batch = collate(episodes, "window")
    expect: dict[str, tuple[list[float], list[bool]]] = {
        # group of two: +-0.5 / (std 0.7071 + eps); a group of one: mean 0, std 1 -> 1 / (1 + eps)
        "grpo": ([0.5 / (math.sqrt(0.5) + EPS), -0.5 / (math.sqrt(0.5) + EPS), 1 / (1 + EPS)], [True] * 3),
        "nsr": ([0.0, -1.0, 0.0], [False, True, False]),
        "psr": ([1.0, 0.0, 1.0], [True, False, True]),
        "w_reinforce": ([0.1, -1.0, 0.1], [True] * 3),
        # the group of one is all equal: dropped
        "dapo": ([0.5 / (math.sqrt(0.5) + EPS), -0.5 / (math.sqrt(0.5) + EPS), 0.0], [True, True, False]),
    }
    for name, (values, keep) in expect.items():
        adv, _ = get_estimator(name)(batch, load_config(None, [f"algo.advantage={name}"]))
        torch.testing.assert_close(adv.values, torch.tensor(values), rtol=0, atol=1e-6, msg=name)
        assert adv.keep.tolist() == keep, name


def test_dapo_shapes_returns_by_the_batch_response_lengths() -> None:
    # Budget 3 turns x 2 tokens = 6, buffer 4: penalty 0 up to 2 tokens, then (2 - n) / 4. The episodes' responses
    # hold 1 + 2 + 3 = 6 and 1 token: returns 1 - 1 = 0 and 0 - 0 = 0 after shaping, so GRPO gives both 0; dynamic
    # sampling still keeps the group (its scores 1 and 0 differ).
    long = _episode([0.0, 0.0, 1.0], ["a", "b", "c"])
    short = _episode([0.0], ["a"])
    batch = collate([long, short], "concat")
    assert batch.episode_response_tokens.tolist() == [6, 1]
    overrides = ["rollout.max_new_tokens=2", "rollout.max_turns=3", "algo.overlong_buffer=4"]
    adv, metrics = get_estimator("dapo")(batch, load_config(None, ["algo.advantage=dapo", *overrides]))
    assert adv.keep.all() and metrics["dapo/kept_group_frac"] == 1.0
    torch.testing.assert_close(adv.values, torch.zeros(4), rtol=0, atol=1e-6)
