"""train_on_episodes' bookkeeping: what enters the group statistics and the loss."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest
import torch

from resrl_agent.algorithms import estimators
from resrl_agent.algorithms.estimators import TurnAdvantages, register_estimator
from resrl_agent.config import RunConfig, load_config
from resrl_agent.errors import TrainerError
from resrl_agent.trainer.learner import Learner, LearnerSettings
from resrl_agent.trainer.update import apply_resrl, compute_turn_advantages, train_on_episodes
from resrl_agent.types import Batch, collate


def test_dapo_drops_groups_by_score_not_by_the_overlong_shaped_reward(episode_factory: Any) -> None:
    episodes = episode_factory(num_groups=2, group_size=2, num_turns=1)
    # group 0: both right, one of them overlong -> still all right: dropped; group 1: one right, one wrong: kept
    scores = [1.0, 1.0, 1.0, 0.0]
    long_response = list(range(5, 25))  # 20 tokens: 10 over the 10-token budget's buffer start
    shaped = []
    for i, (e, score) in enumerate(zip(episodes, scores, strict=True)):
        turn = e.turns[0]
        ids = long_response if i == 0 else turn.response_ids[:2]
        turn = dataclasses.replace(turn, response_ids=ids, response_logprobs=[-1.0] * len(ids), reward=score)
        shaped.append(dataclasses.replace(e, turns=[turn], won=score > 0, return_=None))
    # a response budget of 10 tokens per turn for 2 turns: 20 tokens
    cfg = load_config(
        None, ["algo.advantage=dapo", "algo.overlong_buffer=10", "rollout.max_new_tokens=10", "rollout.max_turns=2"]
    )
    batch = collate(shaped, "window")
    adv, metrics = compute_turn_advantages(batch, cfg)
    assert adv.keep.tolist() == [False, False, True, True]
    assert metrics["dapo/kept_group_frac"] == 0.5
    # the kept group's advantages: GRPO over its (unpenalised, short) returns 1 and 0 -> +-1/sqrt(2)
    torch.testing.assert_close(adv.values[2:], torch.tensor([0.7071, -0.7071]), atol=1e-4, rtol=0)
    assert adv.values[:2].tolist() == [0.0, 0.0]


def test_env_error_episodes_enter_neither_group_statistics_nor_loss(fresh_model: Any, episode_factory: Any) -> None:
    episodes = episode_factory(num_groups=2, group_size=4, num_turns=2)
    broken = dataclasses.replace(episodes[1], stop_reason="env_error")  # a losing sample whose env crashed
    with_error = [*episodes[:1], broken, *episodes[2:]]
    without = [*episodes[:1], *episodes[2:]]
    cfg = load_config(None, ["algo.advantage=grpo", "trainer.lr=0.01", "trainer.warmup_steps=0"])
    states = []
    for batch in (with_error, without):
        learner = Learner(copy.deepcopy(fresh_model), LearnerSettings.from_config(cfg), seed=3)
        metrics = train_on_episodes(learner, batch, cfg)
        states.append(learner.model.state_dict())
        assert metrics["update/rows"] == 7.0
    assert metrics["update/env_error_episodes"] == 0.0
    for key, value in states[0].items():
        torch.testing.assert_close(value, states[1][key], msg=key)
    # and the errored episode would have changed the update had it counted as a failure
    learner = Learner(copy.deepcopy(fresh_model), LearnerSettings.from_config(cfg), seed=3)
    train_on_episodes(learner, episodes, cfg)
    changed = any(not torch.equal(v, states[1][k]) for k, v in learner.model.state_dict().items())
    assert changed


def test_apply_resrl_weights_of_a_group_do_not_depend_on_the_other_groups() -> None:
    # Data parallel: a rank fits only its groups, so a group's reweighted advantages must not depend on which
    # other groups share the call (subsampling and the randomized SVD draw from the group's own seed).
    gen = torch.Generator().manual_seed(0)
    rows, t, d = 9, 12, 16
    row_group = torch.tensor([2, 0, 1, 2, 0, 1, 2, 0, 1])
    loss_mask = torch.rand(rows, t, generator=gen) > 0.2
    token_adv = torch.randn(rows, 1, generator=gen).expand(rows, t) * loss_mask
    hidden = torch.randn(int(loss_mask.sum()), d, generator=gen)
    names = ["g0", "g1", "g2"]
    cfg = load_config(None, ["algo.resrl.svd=randomized", "algo.resrl.max_pos_tokens=5", "algo.resrl.rank=3"])
    score = torch.zeros(rows)
    full, metrics = apply_resrl(token_adv, loss_mask, hidden, row_group, score, cfg.algo, seed=5, group_names=names)
    tok_row = loss_mask.nonzero(as_tuple=True)[0]
    for keep in ([0, 1], [2]):  # the rows of some groups, as one rank would hold them
        sel = torch.isin(row_group, torch.tensor(keep))
        part, _ = apply_resrl(
            token_adv[sel],
            loss_mask[sel],
            hidden[sel[tok_row]],
            row_group[sel],
            score[sel],
            cfg.algo,
            seed=5,
            group_names=names,
        )
        assert torch.equal(part, full[sel])
    assert "resrl/residual_energy_mean" in metrics and metrics["resrl/groups_processed"] == 3.0  # all three fitted
    _, quiet = apply_resrl(
        token_adv, loss_mask, hidden, row_group, score, cfg.algo, seed=5, group_names=names, alignment=False
    )
    assert (
        "resrl/residual_energy_mean" not in quiet and quiet["resrl/neg_weight_mean"] == metrics["resrl/neg_weight_mean"]
    )


def test_a_registered_estimator_drives_the_update(
    fresh_model: Any, episode_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(estimators, "_ESTIMATORS", dict(estimators._ESTIMATORS))  # gone after the test
    seen: list[int] = []

    @register_estimator("first_turn_sign")
    def first_turn_sign(batch: Batch, config: RunConfig, /) -> tuple[TurnAdvantages, dict[str, float]]:
        """+1 on the first turn of a won episode, -1 on that of a lost one; later turns are dropped."""
        seen.append(batch.num_turns)
        won = batch.episode_return[batch.turn_episode] > 0
        keep = batch.turn_number == 0
        values = torch.where(keep, torch.where(won, 1.0, -1.0), 0.0)
        return TurnAdvantages(values, keep), {"first_turn_sign/kept": float(keep.sum())}

    episodes = episode_factory(num_groups=2, group_size=2, num_turns=2, mode="window")  # one win, one loss a group
    cfg = load_config(
        None,
        [
            "algo.advantage=first_turn_sign",
            "algo.resrl.reweight=none",
            "rollout.context_mode=window",
            "trainer.lr=0.01",
            "trainer.warmup_steps=0",
        ],
    )
    learner = Learner(copy.deepcopy(fresh_model), LearnerSettings.from_config(cfg), seed=3)
    before = copy.deepcopy(learner.model.state_dict())
    metrics = train_on_episodes(learner, episodes, cfg)
    assert seen == [8] and metrics["first_turn_sign/kept"] == 4.0
    assert metrics["update/rows"] == 4.0  # window mode: one row per turn, the first turns only
    assert (metrics["adv/turn_min"], metrics["adv/turn_max"], metrics["adv/turn_mean"]) == (-1.0, 1.0, 0.0)
    assert any(not torch.equal(v, before[k]) for k, v in learner.model.state_dict().items())

    # an estimator's output is checked against the batch's turn table
    @register_estimator("too_short")
    def too_short(batch: Batch, config: RunConfig, /) -> tuple[TurnAdvantages, dict[str, float]]:
        return TurnAdvantages(torch.zeros(1), torch.ones(1, dtype=torch.bool)), {}

    bad = load_config(None, ["algo.advantage=too_short", "rollout.context_mode=window"])
    with pytest.raises(TrainerError, match=r"estimator 'too_short' returned values of shape \(1,\)"):
        compute_turn_advantages(collate(episodes, "window"), bad)
