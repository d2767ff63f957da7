"""GiGPO advantages against hand-computed numbers, plus hypothesis properties.

The examples are written per episode (rewards[i][t], anchors[i][t]); `per_episode` lays them out as the flat turn
table `gigpo_advantages` takes (what a collated Batch holds) and splits the advantages back.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from resrl_agent.algorithms.gigpo import discounted_returns, gigpo_advantages

SETTINGS = settings(max_examples=50, deadline=None)
EPS = 1e-6


def turn_table(
    step_rewards: Sequence[Sequence[float]],
    group_ids: Sequence[Hashable],
    anchors: Sequence[Sequence[Hashable]],
    invalid: Sequence[Sequence[bool]] | None = None,
) -> tuple[torch.Tensor, ...]:
    """(rewards, turn_episode, turn_number, episode_group, step_group, invalid) of the episodes' steps, in order."""
    turn_episode = [i for i, row in enumerate(step_rewards) for _ in row]
    turn_number = [t for row in step_rewards for t in range(len(row))]
    dense: dict[Hashable, int] = {}
    episode_group = [dense.setdefault(g, len(dense)) for g in group_ids]
    keys: dict[tuple[int, Hashable], int] = {}
    step_group = [
        keys.setdefault((episode_group[i], anchors[i][t]), len(keys))
        for i, t in zip(turn_episode, turn_number, strict=True)
    ]
    flat_invalid = [False] * len(turn_episode) if invalid is None else [bool(x) for row in invalid for x in row]
    return (
        torch.tensor([float(r) for row in step_rewards for r in row], dtype=torch.float64),
        torch.tensor(turn_episode, dtype=torch.long),
        torch.tensor(turn_number, dtype=torch.long),
        torch.tensor(episode_group, dtype=torch.long),
        torch.tensor(step_group, dtype=torch.long),
        torch.tensor(flat_invalid, dtype=torch.bool),
    )


def per_episode(
    step_rewards: Sequence[Sequence[float]],
    group_ids: Sequence[Hashable],
    anchors: Sequence[Sequence[Hashable]],
    *,
    invalid: Sequence[Sequence[bool]] | None = None,
    **kw: Any,
) -> list[list[float]]:
    """`gigpo_advantages` on the episodes' turn table, split back into advantages[i][t]."""
    adv = gigpo_advantages(*turn_table(step_rewards, group_ids, anchors, invalid), **kw).tolist()
    out, start = [], 0
    for row in step_rewards:
        out.append(adv[start : start + len(row)])
        start += len(row)
    return out


def close(actual: list[list[float]], expected: list[list[float]], tol: float = 1e-9) -> None:
    assert [len(a) for a in actual] == [len(e) for e in expected]
    for a_row, e_row in zip(actual, expected, strict=True):
        for a, e in zip(a_row, e_row, strict=True):
            assert a == pytest.approx(e, abs=tol)


def test_discounted_returns() -> None:
    # gamma 0.5: [1, 0, 2] -> G_2 = 2, G_1 = 0 + 0.5 * 2 = 1, G_0 = 1 + 0.5 * 1 = 1.5; padding stays 0.
    r = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 0.0]], dtype=torch.float64)
    valid = torch.tensor([[True, True, True], [True, False, False]])
    out = discounted_returns(r, valid, 0.5)
    torch.testing.assert_close(out, torch.tensor([[1.5, 1.0, 2.0], [3.0, 0.0, 0.0]], dtype=torch.float64))


def test_two_episodes_sharing_anchors_mean_norm() -> None:
    # A = [0, 1], B = [0, 0], both visit s0 then s1; gamma 0.5, norm "mean", episode_stats "steps".
    # A_E: rows R = [1, 1, 0, 0], mean 0.5 -> A rows +0.5, B rows -0.5.
    # G: A = [0 + 0.5 * 1, 1] = [0.5, 1], B = [0, 0].
    # A_S: s0 = [0.5, 0] mean 0.25 -> +-0.25; s1 = [1, 0] mean 0.5 -> +-0.5.
    # A = A_E + A_S: A = [0.75, 1.0], B = [-0.75, -1.0].
    adv = per_episode([[0, 1], [0, 0]], ["g", "g"], [["s0", "s1"], ["s0", "s1"]], gamma=0.5, norm="mean")
    close(adv, [[0.75, 1.0], [-0.75, -1.0]])


def test_two_episodes_sharing_anchors_mean_std() -> None:
    # Same data, norm "mean_std". A_E: rows [1, 1, 0, 0], std = sqrt(4 * 0.25 / 3) -> +-0.5 / (0.57735 + eps).
    # A_S: s0 = [0.5, 0], std = sqrt(2 * 0.25^2 / 1) = 0.353553 -> +-0.25 / (0.353553 + eps);
    #      s1 = [1, 0], std = 0.707107 -> +-0.5 / (0.707107 + eps).  Both ~ +-0.707106.
    adv = per_episode([[0, 1], [0, 0]], ["g", "g"], [["s0", "s1"], ["s0", "s1"]], gamma=0.5)
    ae = 0.5 / (math.sqrt(1 / 3) + EPS)
    as0 = 0.25 / (math.sqrt(2 * 0.25**2) + EPS)
    as1 = 0.5 / (math.sqrt(0.5) + EPS)
    close(adv, [[ae + as0, ae + as1], [-ae - as0, -ae - as1]])


def test_episode_stats_steps_vs_trajectories() -> None:
    # A = [0, 0, 1] on s0, s1, s2; B = [0] on s0. gamma 1, mean_std. R_A = 1, R_B = 0.
    # "steps": rows R = [1, 1, 1, 0]: mean 0.75, ss = 3 * 0.0625 + 0.5625 = 0.75, std = sqrt(0.75 / 3) = 0.5
    #   -> A rows 0.25 / 0.5, B row -0.75 / 0.5.
    # "trajectories": values [1, 0]: mean 0.5, std = sqrt(0.5) -> A rows +0.5 / 0.7071, B row -0.5 / 0.7071.
    # A_S: G_A = [1, 1, 1], G_B = [0]; s0 = [1, 0] -> +-0.5 / (0.7071 + eps); s1, s2 alone -> 0.
    rewards = [[0, 0, 1], [0]]
    anchors = [["s0", "s1", "s2"], ["s0"]]
    a_s = 0.5 / (math.sqrt(0.5) + EPS)
    steps = per_episode(rewards, [1, 1], anchors, gamma=1.0, episode_stats="steps")
    close(steps, [[0.25 / (0.5 + EPS) + a_s, 0.25 / (0.5 + EPS), 0.25 / (0.5 + EPS)], [-0.75 / (0.5 + EPS) - a_s]])
    traj = per_episode(rewards, [1, 1], anchors, gamma=1.0, episode_stats="trajectories")
    t = 0.5 / (math.sqrt(0.5) + EPS)
    close(traj, [[t + a_s, t, t], [-t - a_s]])


def test_invalid_penalty_enters_r_and_own_g_only() -> None:
    # A = [0, 1] on x, y with step 0 invalid; B = [0, 0] on x, z; gamma 0.5, norm "mean", penalty 0.1.
    # Rows R: A = [1 - 0.1, 1] = [0.9, 1], B = [0, 0]; mean 0.475 -> A_E: A = [0.425, 0.525], B = [-0.475, -0.475].
    # G_A = [0.5, 1] -> step 0 penalised to 0.4; G_B = [0, 0]. x = [0.4, 0] mean 0.2 -> +-0.2; y, z alone -> 0.
    # A = [0.625, 0.525], B = [-0.675, -0.475].
    rewards = [[0, 1], [0, 0]]
    anchors = [["x", "y"], ["x", "z"]]
    adv = per_episode(rewards, ["g", "g"], anchors, invalid=[[True, False], [False, False]], gamma=0.5, norm="mean")
    close(adv, [[0.625, 0.525], [-0.675, -0.475]])
    # Invalid at A's step 1 instead: rows R: A = [1, 0.9] -> A_E: A = [0.525, 0.425], B = [-0.475, -0.475].
    # G_A step 1 = 1 - 0.1 = 0.9, but step 0 keeps 0 + 0.5 * 1 = 0.5 (the penalty is not discounted back):
    # x = [0.5, 0] mean 0.25 -> +-0.25. A = [0.775, 0.425], B = [-0.725, -0.475].
    adv = per_episode(rewards, ["g", "g"], anchors, invalid=[[False, True], [False, False]], gamma=0.5, norm="mean")
    close(adv, [[0.775, 0.425], [-0.725, -0.475]])


def test_invalid_penalty_in_trajectory_stats_uses_unpenalised_returns() -> None:
    # Episodes A = [1] (invalid), B = [0]; trajectories, norm "mean": stats over R = [1, 0], mean 0.5.
    # A row R = 1 - 0.1 = 0.9 -> 0.4; B -> -0.5. Anchors distinct, so A_S = 0.
    adv = per_episode(
        [[1], [0]], [0, 0], [["a"], ["b"]], invalid=[[True], [False]], norm="mean", episode_stats="trajectories"
    )
    close(adv, [[0.4], [-0.5]])


def test_group_of_one_episode_and_a_revisited_anchor() -> None:
    # One episode [0, 1] alone in its group: A_E uses mean 0, std 1 -> R / (1 + eps) = 1 / (1 + 1e-6) on both rows.
    # Both steps act on anchor "a" (a loop), so they form a step group of two: G = [0.5, 1] (gamma 0.5),
    # mean 0.75, std = sqrt(2 * 0.25^2) = 0.353553 -> A_S = -+0.25 / (0.353553 + eps).
    a_e = 1 / (1 + EPS)
    a_s = 0.25 / (math.sqrt(2 * 0.25**2) + EPS)
    close(per_episode([[0, 1]], ["solo"], [["a", "a"]], gamma=0.5), [[a_e - a_s, a_e + a_s]])
    # Distinct anchors: singleton step groups give A_S = 0.
    close(per_episode([[0, 1]], ["solo"], [["a", "b"]], gamma=0.5), [[a_e, a_e]])


def test_step_groups_do_not_cross_episode_groups() -> None:
    # Same anchor "s" in two different episode groups: each step group is a singleton -> A_S = 0;
    # each episode group has one episode -> A_E = R / (1 + eps).
    adv = per_episode([[1], [0]], ["g1", "g2"], [["s"], ["s"]])
    close(adv, [[1 / (1 + EPS)], [0.0]])


def test_omega_scales_step_term() -> None:
    # From the mean-norm example: A_E = +-0.5, A_S = [+-0.25, +-0.5]; omega 2 -> A = [1.0, 1.5], B = [-1.0, -1.5].
    adv = per_episode([[0, 1], [0, 0]], [0, 0], [["s0", "s1"], ["s0", "s1"]], gamma=0.5, norm="mean", omega=2.0)
    close(adv, [[1.0, 1.5], [-1.0, -1.5]])


def test_validation_and_empty() -> None:
    assert per_episode([], [], []) == []
    empty = gigpo_advantages(*turn_table([[], []], [0, 0], [[], []]))  # episodes without steps
    assert empty.shape == (0,) and empty.dtype == torch.float64
    rewards, episode, number, group, step, invalid = turn_table([[1.0, 0.0], [0.0]], [0, 0], [["a", "b"], ["a"]])
    with pytest.raises(ValueError, match="one entry per step"):
        gigpo_advantages(rewards, episode, number[:2], group, step, invalid)
    with pytest.raises(ValueError, match="invalid has shape"):
        gigpo_advantages(rewards, episode, number, group, step, invalid[:1])
    with pytest.raises(ValueError, match=r"turn_episode must lie in \[0, 1\)"):
        gigpo_advantages(rewards, episode, number, group[:1], step, invalid)
    with pytest.raises(ValueError, match="numbered 0, 1"):  # a gap: steps 0 and 2 of a two-step episode
        gigpo_advantages(rewards, episode, torch.tensor([0, 2, 0]), group, step, invalid)
    with pytest.raises(ValueError, match="numbered 0, 1"):  # a repeat
        gigpo_advantages(rewards, episode, torch.tensor([1, 1, 0]), group, step, invalid)
    with pytest.raises(ValueError, match="episode_stats"):
        gigpo_advantages(rewards, episode, number, group, step, episode_stats="bogus")  # type: ignore[arg-type]


@st.composite
def episodes(draw: st.DrawFn) -> tuple[list[list[float]], list[int], list[list[str]], list[list[bool]]]:
    num = draw(st.integers(1, 6))
    rewards, groups, anchors, invalid = [], [], [], []
    for _ in range(num):
        n = draw(st.integers(1, 4))
        rewards.append(draw(st.lists(st.sampled_from([0.0, 1.0, 0.5, -1.0]), min_size=n, max_size=n)))
        anchors.append(draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=n, max_size=n)))
        invalid.append(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
        groups.append(draw(st.integers(0, 1)))
    return rewards, groups, anchors, invalid


Episodes = tuple[list[list[float]], list[int], list[list[str]], list[list[bool]]]


@SETTINGS
@given(data=episodes(), stats=st.sampled_from(["steps", "trajectories"]))
def test_singleton_anchor_groups_get_zero_step_advantage(data: Episodes, stats: str) -> None:
    rewards, groups, anchors, invalid = data
    kw = {"invalid": invalid, "episode_stats": stats}
    full = per_episode(rewards, groups, anchors, omega=1.0, **kw)  # type: ignore[arg-type]
    episode_only = per_episode(rewards, groups, anchors, omega=0.0, **kw)  # type: ignore[arg-type]
    counts: dict[tuple[int, str], int] = {}
    for g, row in zip(groups, anchors, strict=True):
        for a in row:
            counts[(g, a)] = counts.get((g, a), 0) + 1
    for i, row in enumerate(anchors):
        for t, a in enumerate(row):
            if counts[(groups[i], a)] == 1:
                assert full[i][t] == pytest.approx(episode_only[i][t], abs=1e-12)


@SETTINGS
@given(data=episodes())
def test_mean_norm_advantages_sum_to_zero_per_group(data: Episodes) -> None:
    # norm "mean", steps mode: sum over rows of A_E and over each step group of A_S is 0 (groups of >= 2 episodes).
    rewards, groups, anchors, invalid = data
    adv = per_episode(rewards, groups, anchors, invalid=invalid, norm="mean")
    for g in set(groups):
        members = [i for i, gi in enumerate(groups) if gi == g]
        if len(members) < 2:
            continue
        assert sum(sum(adv[i]) for i in members) == pytest.approx(0.0, abs=1e-9)


@SETTINGS
@given(data=episodes(), seed=st.integers(0, 2**16))
def test_permuting_episodes_permutes_advantages(data: Episodes, seed: int) -> None:
    rewards, groups, anchors, invalid = data
    perm = torch.randperm(len(rewards), generator=torch.Generator().manual_seed(seed)).tolist()
    base = per_episode(rewards, groups, anchors, invalid=invalid)
    permuted = per_episode(
        [rewards[i] for i in perm],
        [groups[i] for i in perm],
        [anchors[i] for i in perm],
        invalid=[invalid[i] for i in perm],
    )
    close(permuted, [base[i] for i in perm], tol=1e-9)


@SETTINGS
@given(data=episodes(), seed=st.integers(0, 2**16))
def test_the_turn_table_may_come_in_any_order(data: Episodes, seed: int) -> None:
    rewards, groups, anchors, invalid = data
    table = turn_table(rewards, groups, anchors, invalid)
    base = gigpo_advantages(*table)
    perm = torch.randperm(base.numel(), generator=torch.Generator().manual_seed(seed))
    rewards_t, episode, number, group, step, bad = table
    shuffled = gigpo_advantages(rewards_t[perm], episode[perm], number[perm], group, step[perm], bad[perm])
    torch.testing.assert_close(shuffled, base[perm], rtol=0, atol=1e-9)
