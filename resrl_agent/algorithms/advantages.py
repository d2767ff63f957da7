"""Outcome advantages: GRPO, NSR, PSR, W-REINFORCE and DAPO's filters (docs/design.md "Algorithms (exact)").

Every function takes one scalar reward per sample (a 1-D tensor) and, where the estimator needs it,
the sample's group id (any hashable; a group is the G rollouts of one task). Groups are exact: the
caller passes the whole batch, never a micro-batch. Group statistics are computed with `index_add_`
over dense group indices, so there is no per-sample Python loop over tensor values.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Literal

import torch

Norm = Literal["mean_std", "mean"]
Singleton = Literal["unit", "zero"]

__all__ = [
    "Norm",
    "dapo_keep_mask",
    "dapo_overlong_penalty",
    "group_index",
    "group_mean_std",
    "group_normalize",
    "grpo",
    "nsr",
    "outcome_turn_advantages",
    "psr",
    "w_reinforce",
]


def group_index(group_ids: Sequence[Hashable], *, device: torch.device | None = None) -> tuple[torch.Tensor, int]:
    """Map hashable group ids to dense int64 indices in order of first appearance.

    Returns:
        (index [N] int64, number of distinct groups). First-appearance order makes the mapping
        deterministic (no Python `hash()` ordering is involved).
    """
    dense: dict[Hashable, int] = {}
    idx = [dense.setdefault(g, len(dense)) for g in group_ids]
    return torch.tensor(idx, dtype=torch.long, device=device), len(dense)


def group_mean_std(
    values: torch.Tensor, group_idx: torch.Tensor, num_groups: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-group count, mean and unbiased std of `values` [N] (two-pass, so no catastrophic cancellation).

    Returns three [num_groups] tensors in `values`' dtype. The std of a group with fewer than two members
    is 0 (callers apply the group-of-one rule themselves).
    """
    count = torch.zeros(num_groups, dtype=values.dtype, device=values.device)
    count.index_add_(0, group_idx, torch.ones_like(values))
    total = torch.zeros_like(count).index_add_(0, group_idx, values)
    mean = total / count.clamp_min(1)
    dev2 = (values - mean[group_idx]).square()
    ss = torch.zeros_like(count).index_add_(0, group_idx, dev2)
    std = (ss / (count - 1).clamp_min(1)).sqrt()
    return count, mean, std


def group_normalize(
    values: torch.Tensor,
    group_idx: torch.Tensor,
    num_groups: int,
    *,
    norm: Norm = "mean_std",
    eps: float = 1e-6,
    singleton: Singleton = "unit",
) -> torch.Tensor:
    """Normalise `values` [N] within groups: (x - mean) / (std + eps) ("mean_std") or x - mean ("mean").

    The std is unbiased. A group with one member follows `singleton`: "unit" uses mean 0 and std 1
    (GRPO's and GiGPO's episode rule), "zero" gives 0 (GiGPO's step-group rule).
    """
    count, mean, std = group_mean_std(values, group_idx, num_groups)
    alone = count < 2
    if singleton == "unit":
        mean = torch.where(alone, torch.zeros_like(mean), mean)
        std = torch.where(alone, torch.ones_like(std), std)
    out = values - mean[group_idx]
    if norm == "mean_std":
        out = out / (std[group_idx] + eps)
    elif norm != "mean":
        raise ValueError(f"norm={norm!r} is not one of 'mean_std', 'mean'.")
    if singleton == "zero":
        out = torch.where(alone[group_idx], torch.zeros_like(out), out)
    elif singleton != "unit":
        raise ValueError(f"singleton={singleton!r} is not one of 'unit', 'zero'.")
    return out


def _check_rewards(rewards: torch.Tensor, group_ids: Sequence[Hashable] | None = None) -> torch.Tensor:
    """Validate a reward vector and return it as a floating tensor (float32 unless already floating)."""
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be a 1-D tensor [N]; got shape {tuple(rewards.shape)}.")
    if group_ids is not None and len(group_ids) != rewards.numel():
        raise ValueError(
            f"group_ids has {len(group_ids)} entries but rewards has {rewards.numel()}; pass one group id per sample."
        )
    return rewards if rewards.is_floating_point() else rewards.to(torch.float32)


def grpo(
    rewards: torch.Tensor, group_ids: Sequence[Hashable], *, std_norm: bool = True, eps: float = 1e-6
) -> torch.Tensor:
    """GRPO: A = (r - mean_group) / (std_group + eps), std unbiased; a group of one has mean 0, std 1.

    Args:
        rewards: [N] one scalar score per sample.
        group_ids: N hashables; samples with equal ids form a group.
        std_norm: divide by the group std (False gives Dr. GRPO's r - mean).

    Returns:
        [N] advantages in `rewards`' dtype (float32 for integer rewards).
    """
    rewards = _check_rewards(rewards, group_ids)
    idx, num_groups = group_index(group_ids, device=rewards.device)
    # float64 inside: the per-group sums then cancel to ~1e-16, which the "sums to zero" property relies on.
    adv = group_normalize(rewards.double(), idx, num_groups, norm="mean_std" if std_norm else "mean", eps=eps)
    return adv.to(rewards.dtype)


def nsr(rewards: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Negative Sample Reinforcement: A = r - 1, trained on the wrong samples (score <= 0) only.

    Returns:
        (advantages [N], keep_mask [N] bool). Dropped samples get advantage 0; the caller removes them
        from the batch, which changes token-mean's denominator (as in RLVR-Decomposed).
    """
    rewards = _check_rewards(rewards)
    keep = rewards <= 0
    return torch.where(keep, rewards - 1, torch.zeros_like(rewards)), keep


def psr(rewards: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive Sample Reinforcement: A = r, trained on the correct samples (score > 0) only.

    Returns:
        (advantages [N], keep_mask [N] bool), dropped samples at advantage 0.
    """
    rewards = _check_rewards(rewards)
    keep = rewards > 0
    return torch.where(keep, rewards, torch.zeros_like(rewards)), keep


def w_reinforce(rewards: torch.Tensor, *, pos: float = 0.1, neg: float = -1.0) -> torch.Tensor:
    """W-REINFORCE: score 1 gives `pos` (lambda = 0.1), score 0 gives `neg`, any other score keeps A = r.

    All samples are kept. Returns [N] advantages.
    """
    rewards = _check_rewards(rewards)
    out = torch.where(rewards == 0, torch.full_like(rewards, neg), rewards)
    return torch.where(rewards == 1, torch.full_like(rewards, pos), out)


def dapo_keep_mask(rewards: torch.Tensor, group_ids: Sequence[Hashable]) -> torch.Tensor:
    """DAPO dynamic sampling: False for every sample of a group whose rewards are all equal.

    With 0/1 scores that is a group that is all right or all wrong (its GRPO advantages are all 0).
    A group of one is all equal, so it is dropped too. Returns [N] bool.
    """
    rewards = _check_rewards(rewards, group_ids)
    idx, num_groups = group_index(group_ids, device=rewards.device)
    hi = torch.full((num_groups,), -torch.inf, dtype=rewards.dtype, device=rewards.device)
    lo = torch.full((num_groups,), torch.inf, dtype=rewards.dtype, device=rewards.device)
    hi = hi.scatter_reduce(0, idx, rewards, reduce="amax")
    lo = lo.scatter_reduce(0, idx, rewards, reduce="amin")
    return (hi > lo)[idx]


def dapo_overlong_penalty(lengths: torch.Tensor | Sequence[int], *, max_len: int, buffer: int) -> torch.Tensor:
    """DAPO's soft overlong punishment, added to the reward of each response.

    With L = max_len and C = buffer: 0 for |y| <= L - C, ((L - C) - |y|) / C for L - C < |y| <= L
    (a linear ramp from 0 to -1), and -1 beyond L.

    Returns:
        [N] float32 penalties (<= 0).
    """
    if buffer <= 0 or buffer > max_len:
        raise ValueError(
            f"buffer={buffer} must be in (0, max_len={max_len}]; DAPO uses e.g. max_len=20480, buffer=4096."
        )
    n = torch.as_tensor(lengths).to(torch.float32)
    safe = float(max_len - buffer)
    ramp = (safe - n) / buffer
    out = torch.where(n <= safe, torch.zeros_like(n), ramp)
    return torch.where(n > max_len, torch.full_like(n, -1.0), out)


def outcome_turn_advantages(
    scores: torch.Tensor,
    group_ids: Sequence[Hashable],
    turn_episode: torch.Tensor,
    turn_invalid: torch.Tensor,
    *,
    estimator: Literal["grpo", "nsr", "psr", "w_reinforce", "dapo"],
    invalid_penalty: float = 0.1,
    keep: torch.Tensor | None = None,
    std_norm: bool = True,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-turn advantages of an outcome estimator on multi-turn episodes, with the invalid-action penalty.

    Every turn starts from its episode's score; a turn whose output did not parse (``turn_invalid``) has
    ``invalid_penalty`` taken off, so within one episode it is always below the episode's valid turns (verl-agent
    applies the same penalty to the step rows' scores before any estimator; docs/design.md Contract 4).

    - GRPO / DAPO normalise the turn scores within the episode group over its turn rows (verl-agent's statistics,
      GiGPO's ``episode_stats="steps"``): the advantages of a group then sum to 0 over its turns, so tokens that
      every turn shares (the reply format) get no net push from episodes that differ only in length. With the
      statistics over one value per episode instead, a group whose failures run 4x longer than its wins pushes
      those shared tokens down in total, and an invalid turn in a group that is all wrong (std 0) has no finite
      normalised score.
    - NSR (A = s - 1 on wrong episodes), PSR (A = s on right ones) and W-REINFORCE (score 1 -> pos, 0 -> neg) map
      the episode score, then take the penalty off the turn's advantage: applied before W-REINFORCE's mapping it
      would turn an invalid turn of a won episode (score 0.9) into an advantage above its valid turns' 0.1.

    Args:
        scores: [E] episode scores (returns), shaped already if the estimator shapes them (DAPO's overlong term).
        group_ids: E hashables, the episode group of each episode.
        turn_episode: [M] long, the episode of each turn.
        turn_invalid: [M] bool, True where the turn's output did not parse.
        estimator: the outcome estimator.
        keep: [E] bool for DAPO (its dynamic-sampling mask, computed on the unshaped scores); others ignore it.

    Returns:
        (advantages [M] float32, keep [M] bool); dropped turns (NSR's right and PSR's wrong episodes, DAPO's
        all-equal groups) have advantage 0.
    """
    scores = _check_rewards(scores, group_ids).to(torch.float64)
    if turn_episode.dim() != 1 or turn_invalid.shape != turn_episode.shape:
        raise ValueError("turn_episode and turn_invalid must be 1-D tensors of one entry per turn")
    penalty = turn_invalid.to(torch.float64) * float(invalid_penalty)
    turn_score = scores[turn_episode]
    keep_episode = torch.ones_like(scores, dtype=torch.bool)
    match estimator:
        case "grpo" | "dapo":
            idx, num_groups = group_index(group_ids, device=scores.device)
            values = group_normalize(
                turn_score - penalty, idx[turn_episode], num_groups, norm="mean_std" if std_norm else "mean", eps=eps
            )
            if estimator == "dapo":
                if keep is None:
                    raise ValueError("dapo needs its keep mask (dapo_keep_mask on the unshaped scores)")
                keep_episode = keep
        case "nsr":
            adv, keep_episode = nsr(scores)
            values = adv.to(torch.float64)[turn_episode] - penalty
        case "psr":
            adv, keep_episode = psr(scores)
            values = adv.to(torch.float64)[turn_episode] - penalty
        case "w_reinforce":
            values = w_reinforce(scores)[turn_episode] - penalty
        case other:
            raise ValueError(f"estimator={other!r} is not one of 'grpo', 'nsr', 'psr', 'w_reinforce', 'dapo'.")
    keep_turn = keep_episode[turn_episode]
    values = torch.where(keep_turn, values, torch.zeros_like(values))
    return values.to(torch.float32), keep_turn
