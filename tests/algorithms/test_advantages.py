"""Outcome advantages against hand-computed numbers, plus hypothesis properties."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from resrl_agent.algorithms.advantages import (
    dapo_keep_mask,
    dapo_overlong_penalty,
    group_index,
    group_normalize,
    grpo,
    nsr,
    psr,
    w_reinforce,
)

SETTINGS = settings(max_examples=50, deadline=None)
EPS = 1e-6


def test_group_index_is_first_appearance_order() -> None:
    idx, n = group_index(["b", "a", "b", ("t", 1)])
    assert n == 3
    assert idx.tolist() == [0, 1, 0, 2]


def test_grpo_one_group_of_four() -> None:
    # r = [1, 0, 0, 1]: mean 0.5; unbiased var = 4 * 0.5^2 / 3 = 1/3, std = 0.57735;
    # A = +-0.5 / (0.57735 + 1e-6) = +-0.866024.
    adv = grpo(torch.tensor([1.0, 0.0, 0.0, 1.0]), ["q"] * 4)
    a = 0.5 / (math.sqrt(1 / 3) + EPS)
    torch.testing.assert_close(adv, torch.tensor([a, -a, -a, a]))


def test_grpo_uneven_groups_and_group_of_one() -> None:
    # group a = [1, 1, 0]: mean 2/3, deviations [1/3, 1/3, -2/3], ss = 6/9, var = ss / 2 = 1/3, std = 0.57735
    #   -> A = [0.57735, 0.57735, -1.15470];
    # group b = [0.5]: a group of one has mean 0, std 1 -> A = 0.5 / (1 + 1e-6).
    adv = grpo(torch.tensor([1.0, 1.0, 0.0, 0.5]), ["a", "a", "a", "b"])
    s = math.sqrt(1 / 3) + EPS
    expected = torch.tensor([(1 / 3) / s, (1 / 3) / s, (-2 / 3) / s, 0.5 / (1 + EPS)])
    torch.testing.assert_close(adv, expected)


def test_grpo_without_std_norm_is_centred_reward() -> None:
    # group a = [1, 0, 0]: mean 1/3 -> [2/3, -1/3, -1/3]; group b = [1]: mean 0 -> [1].
    adv = grpo(torch.tensor([1.0, 0.0, 0.0, 1.0]), [0, 0, 0, 1], std_norm=False)
    torch.testing.assert_close(adv, torch.tensor([2 / 3, -1 / 3, -1 / 3, 1.0]))


def test_grpo_all_equal_group_gives_zero() -> None:
    # std 0 -> (r - mean) / (0 + eps) = 0 / eps = 0.
    adv = grpo(torch.tensor([1.0, 1.0, 1.0]), [7, 7, 7])
    torch.testing.assert_close(adv, torch.zeros(3))


def test_grpo_integer_rewards_become_float32() -> None:
    assert grpo(torch.tensor([1, 0]), ["x", "x"]).dtype == torch.float32


def test_nsr_and_psr_split_the_batch() -> None:
    # r = [1, 0, 0.5, 0]: NSR keeps r <= 0 with A = r - 1 = -1; PSR keeps r > 0 with A = r.
    r = torch.tensor([1.0, 0.0, 0.5, 0.0])
    adv, keep = nsr(r)
    assert keep.tolist() == [False, True, False, True]
    torch.testing.assert_close(adv, torch.tensor([0.0, -1.0, 0.0, -1.0]))
    adv, keep = psr(r)
    assert keep.tolist() == [True, False, True, False]
    torch.testing.assert_close(adv, torch.tensor([1.0, 0.0, 0.5, 0.0]))


def test_w_reinforce() -> None:
    # score 1 -> +0.1, score 0 -> -1, score 0.5 -> 0.5 (A = r).
    torch.testing.assert_close(w_reinforce(torch.tensor([1.0, 0.0, 0.5])), torch.tensor([0.1, -1.0, 0.5]))
    torch.testing.assert_close(w_reinforce(torch.tensor([1.0, 0.0]), pos=0.3, neg=-2.0), torch.tensor([0.3, -2.0]))


def test_dapo_keep_mask_drops_uniform_groups() -> None:
    # a all right, b all wrong, c mixed, d a group of one (uniform by definition).
    r = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0])
    keep = dapo_keep_mask(r, ["a", "a", "b", "b", "c", "c", "d"])
    assert keep.tolist() == [False, False, False, False, True, True, False]


def test_dapo_overlong_penalty_ramp() -> None:
    # max_len 100, buffer 20: safe up to 80; 90 -> (80 - 90) / 20 = -0.5; 100 -> -1; 120 -> -1.
    pen = dapo_overlong_penalty([50, 80, 90, 100, 120], max_len=100, buffer=20)
    torch.testing.assert_close(pen, torch.tensor([0.0, 0.0, -0.5, -1.0, -1.0]))
    with pytest.raises(ValueError, match="buffer"):
        dapo_overlong_penalty([1], max_len=10, buffer=0)


def test_group_normalize_singleton_zero_rule() -> None:
    # group 0 = [3, 1] -> mean 2, centred [1, -1]; group 1 = [5] alone -> 0.
    out = group_normalize(torch.tensor([3.0, 1.0, 5.0]), torch.tensor([0, 0, 1]), 2, norm="mean", singleton="zero")
    torch.testing.assert_close(out, torch.tensor([1.0, -1.0, 0.0]))


def test_input_validation() -> None:
    with pytest.raises(ValueError, match="one group id per sample"):
        grpo(torch.tensor([1.0, 0.0]), ["a"])
    with pytest.raises(ValueError, match="1-D"):
        grpo(torch.zeros(2, 2), ["a", "b"])


@st.composite
def grouped_rewards(draw: st.DrawFn) -> tuple[list[float], list[int]]:
    sizes = draw(st.lists(st.integers(2, 6), min_size=1, max_size=4))
    rewards: list[float] = []
    groups: list[int] = []
    for g, n in enumerate(sizes):
        rewards += draw(st.lists(st.sampled_from([0.0, 1.0, 0.25, -1.0, 3.5]), min_size=n, max_size=n))
        groups += [g] * n
    return rewards, groups


@SETTINGS
@given(data=grouped_rewards(), std_norm=st.booleans())
def test_grpo_sums_to_zero_per_group(data: tuple[list[float], list[int]], std_norm: bool) -> None:
    rewards, groups = data
    adv = grpo(torch.tensor(rewards, dtype=torch.float64), groups, std_norm=std_norm)
    sums = torch.zeros(max(groups) + 1, dtype=torch.float64).index_add_(0, torch.tensor(groups), adv)
    torch.testing.assert_close(sums, torch.zeros_like(sums), atol=1e-9, rtol=0)


@SETTINGS
@given(data=grouped_rewards(), seed=st.integers(0, 2**16))
def test_grpo_permutation_equivariant(data: tuple[list[float], list[int]], seed: int) -> None:
    rewards, groups = data
    perm = torch.randperm(len(rewards), generator=torch.Generator().manual_seed(seed))
    r = torch.tensor(rewards, dtype=torch.float64)
    adv = grpo(r, groups)
    adv_perm = grpo(r[perm], [groups[i] for i in perm.tolist()])
    torch.testing.assert_close(adv_perm, adv[perm])
