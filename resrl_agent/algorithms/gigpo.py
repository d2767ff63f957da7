"""GiGPO advantages (arXiv 2505.10978): episode-level plus anchor-state step-level relative advantages.

A = A_E + omega * A_S (GiGPO Eq. 9). A_E normalises each episode's return within its episode group
(Eq. 3); A_S normalises the discounted return G_t within the step group, all steps of the episode group
(any episode, any time step) whose anchor key is identical (Eq. 6-8). docs/design.md "Algorithms (exact)"
fixes the details, including the two places the invalid-action penalty enters.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Literal

import torch

from resrl_agent.algorithms.advantages import Norm, group_index, group_mean_std, group_normalize

EpisodeStats = Literal["steps", "trajectories"]

__all__ = ["EpisodeStats", "discounted_returns", "gigpo_advantages"]


def discounted_returns(rewards: torch.Tensor, valid: torch.Tensor, gamma: float) -> torch.Tensor:
    """G_t = r_t + gamma * G_{t+1} along the last axis of padded rewards [N, T] (0 at padding).

    Vectorised over episodes: one loop over time steps, none over episodes. `valid` [N, T] bool marks
    real steps; padding must sit after the real steps of each row.
    """
    rewards = torch.where(valid, rewards, torch.zeros_like(rewards))
    returns = torch.zeros_like(rewards)
    running = rewards.new_zeros(rewards.shape[0])
    for t in range(rewards.shape[1] - 1, -1, -1):
        running = rewards[:, t] + gamma * running
        returns[:, t] = running
    return returns


def gigpo_advantages(
    step_rewards: Sequence[Sequence[float]],
    group_ids: Sequence[Hashable],
    anchors: Sequence[Sequence[Hashable]],
    *,
    invalid: Sequence[Sequence[bool]] | None = None,
    gamma: float = 0.95,
    omega: float = 1.0,
    norm: Norm = "mean_std",
    episode_stats: EpisodeStats = "steps",
    invalid_penalty: float = 0.1,
    eps: float = 1e-6,
) -> list[list[float]]:
    """GiGPO advantage of every step (turn) of every episode.

    Args:
        step_rewards: step_rewards[i][t], the env reward of episode i at step t.
        group_ids: group_ids[i], the episode group (same task) of episode i.
        anchors: anchors[i][t], the hashable anchor key of the state episode i acted on at step t.
        invalid: invalid[i][t], True where that step's output did not parse (Contract 4); None = all valid.
        gamma: discount of the step-level return G_t.
        omega: weight of A_S.
        norm: "mean_std" ((x - mean) / (std + eps), std unbiased) or "mean" (x - mean), for A_E and A_S.
        episode_stats: "steps" takes A_E's mean/std over all step rows of the episode group (verl-agent's
            default); "trajectories" over one value, the return R, per episode (the paper's equation).
        invalid_penalty: subtracted from an invalid step's R and from its own G_t only (not discounted
            back into earlier steps), as verl-agent applies it.

    Returns:
        advantages[i][t], same ragged shape as `step_rewards`.

    Rules: an episode group with one episode has mean 0 and std 1 for A_E (in both modes, the count is of
    episodes); a step group with one step gives A_S = 0.
    """
    num_eps = len(step_rewards)
    if len(group_ids) != num_eps or len(anchors) != num_eps:
        raise ValueError(
            f"step_rewards, group_ids and anchors must have one entry per episode; got {num_eps}, "
            f"{len(group_ids)} and {len(anchors)}."
        )
    if invalid is not None and len(invalid) != num_eps:
        raise ValueError(f"invalid has {len(invalid)} episodes but step_rewards has {num_eps}.")
    if episode_stats not in ("steps", "trajectories"):
        raise ValueError(f"episode_stats={episode_stats!r} is not one of 'steps', 'trajectories'.")
    lengths = [len(r) for r in step_rewards]
    for i, n in enumerate(lengths):
        if len(anchors[i]) != n or (invalid is not None and len(invalid[i]) != n):
            raise ValueError(f"episode {i}: {n} step rewards but anchors/invalid of another length.")
    if num_eps == 0:
        return []

    max_steps = max(lengths)
    # Padded [N, T] float64 tables; float64 so that the returned Python floats are as exact as the inputs.
    rewards = torch.zeros(num_eps, max_steps, dtype=torch.float64)
    bad = torch.zeros(num_eps, max_steps, dtype=torch.bool)
    for i, r in enumerate(step_rewards):
        rewards[i, : lengths[i]] = torch.tensor(list(r), dtype=torch.float64)
        if invalid is not None:
            bad[i, : lengths[i]] = torch.tensor([bool(x) for x in invalid[i]], dtype=torch.bool)
    length_t = torch.tensor(lengths)
    valid = torch.arange(max_steps)[None, :] < length_t[:, None]

    ep_return = rewards.sum(dim=1)  # R: undiscounted, [N]
    step_return = discounted_returns(rewards, valid, gamma)  # G_t, [N, T]
    penalty = bad.to(torch.float64) * invalid_penalty

    row_ep, row_t = valid.nonzero(as_tuple=True)  # step rows in (episode, step) order
    row_r = ep_return[row_ep] - penalty[row_ep, row_t]
    row_g = step_return[row_ep, row_t] - penalty[row_ep, row_t]

    ep_group, num_groups = group_index(group_ids)
    row_group = ep_group[row_ep]
    eps_per_group = torch.bincount(ep_group, minlength=num_groups)

    # A_E (GiGPO Eq. 3): statistics over step rows or over one return per episode.
    if episode_stats == "steps":
        _, mean, std = group_mean_std(row_r, row_group, num_groups)
    else:
        _, mean, std = group_mean_std(ep_return, ep_group, num_groups)
    alone = eps_per_group < 2
    mean = torch.where(alone, torch.zeros_like(mean), mean)
    std = torch.where(alone, torch.ones_like(std), std)
    adv_e = row_r - mean[row_group]
    if norm == "mean_std":
        adv_e = adv_e / (std[row_group] + eps)
    elif norm != "mean":
        raise ValueError(f"norm={norm!r} is not one of 'mean_std', 'mean'.")

    # A_S (GiGPO Eq. 6-8): step groups keyed by (episode group, anchor), across episodes and time steps.
    step_key: dict[tuple[int, Hashable], int] = {}
    row_group_list = row_group.tolist()
    step_idx = [
        step_key.setdefault((g, anchors[i][t]), len(step_key))
        for g, i, t in zip(row_group_list, row_ep.tolist(), row_t.tolist(), strict=True)
    ]
    step_group = torch.tensor(step_idx, dtype=torch.long)
    adv_s = group_normalize(row_g, step_group, len(step_key), norm=norm, eps=eps, singleton="zero")

    adv = (adv_e + omega * adv_s).tolist()
    out: list[list[float]] = []
    start = 0
    for n in lengths:
        out.append(adv[start : start + n])
        start += n
    return out
