"""GiGPO advantages (arXiv 2505.10978): episode-level plus anchor-state step-level relative advantages.

A = A_E + omega * A_S (GiGPO Eq. 9). A_E normalises each episode's return within its episode group
(Eq. 3); A_S normalises the discounted return G_t within the step group, all steps of the episode group
(any episode, any time step) whose anchor key is identical (Eq. 6-8). docs/design.md "Algorithms (exact)"
fixes the details, including the two places the invalid-action penalty enters.
"""

from __future__ import annotations

from typing import Literal

import torch

from resrl_agent.algorithms.advantages import Norm, group_mean_std, group_normalize

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
    rewards: torch.Tensor,
    turn_episode: torch.Tensor,
    turn_number: torch.Tensor,
    episode_group: torch.Tensor,
    step_group: torch.Tensor,
    invalid: torch.Tensor | None = None,
    *,
    gamma: float = 0.95,
    omega: float = 1.0,
    norm: Norm = "mean_std",
    episode_stats: EpisodeStats = "steps",
    invalid_penalty: float = 0.1,
    eps: float = 1e-6,
) -> torch.Tensor:
    """GiGPO advantage of every step (turn), from flat per-turn tensors (a collated ``Batch``'s turn table).

    Args:
        rewards: [N] the env reward of each step.
        turn_episode: [N] long, the episode of each step, in 0..E-1.
        turn_number: [N] long, the step's time step in its episode; an episode's steps are numbered 0, 1, ...
            with no gaps or repeats (any order of the N entries).
        episode_group: [E] long, the episode group (same task) of every episode, episodes without steps included
            (they count towards their group's size).
        step_group: [N] long, the step group of each step: steps of one episode group whose anchor keys are
            identical (any episode, any time step) share a label; labels of different episode groups differ.
        invalid: [N] bool, True where that step's output did not parse (Contract 4); None = all valid.
        gamma: discount of the step-level return G_t.
        omega: weight of A_S.
        norm: "mean_std" ((x - mean) / (std + eps), std unbiased) or "mean" (x - mean), for A_E and A_S.
        episode_stats: "steps" takes A_E's mean/std over all step rows of the episode group (verl-agent's
            default); "trajectories" over one value, the return R, per episode (the paper's equation).
        invalid_penalty: subtracted from an invalid step's R and from its own G_t only (not discounted
            back into earlier steps), as verl-agent applies it.

    Returns:
        [N] float64 advantages, in the order of the inputs.

    Rules: an episode group with one episode has mean 0 and std 1 for A_E (in both modes, the count is of
    episodes); a step group with one step gives A_S = 0.
    """
    num_steps = rewards.shape[0]
    if rewards.dim() != 1 or any(t.shape != (num_steps,) for t in (turn_episode, turn_number, step_group)):
        raise ValueError(
            f"rewards, turn_episode, turn_number and step_group must be [N] tensors of one entry per step; got "
            f"shapes {[tuple(t.shape) for t in (rewards, turn_episode, turn_number, step_group)]}."
        )
    if invalid is not None and invalid.shape != (num_steps,):
        raise ValueError(f"invalid has shape {tuple(invalid.shape)} for {num_steps} steps.")
    if episode_group.dim() != 1:
        raise ValueError(f"episode_group must be [E]; got shape {tuple(episode_group.shape)}.")
    if episode_stats not in ("steps", "trajectories"):
        raise ValueError(f"episode_stats={episode_stats!r} is not one of 'steps', 'trajectories'.")
    num_eps = episode_group.shape[0]
    if num_steps and (int(turn_episode.min()) < 0 or int(turn_episode.max()) >= num_eps):
        raise ValueError(f"turn_episode must lie in [0, {num_eps}) (one entry of episode_group per episode).")
    lengths = torch.bincount(turn_episode, minlength=num_eps)
    max_steps = int(lengths.max()) if num_eps else 0
    numbered = (turn_number >= 0) & (turn_number < lengths[turn_episode])
    if not bool(numbered.all()) or torch.unique(turn_episode * max_steps + turn_number).numel() != num_steps:
        raise ValueError("each episode's steps must be numbered 0, 1, ..., length - 1, each number once.")
    if num_steps == 0:
        return torch.zeros(0, dtype=torch.float64)

    # Padded [E, T] float64 tables; float64 so that the advantages are as exact as the inputs.
    table = torch.zeros(num_eps, max_steps, dtype=torch.float64)
    table[turn_episode, turn_number] = rewards.to(torch.float64)
    valid = torch.arange(max_steps)[None, :] < lengths[:, None]

    ep_return = table.sum(dim=1)  # R: undiscounted, [E]
    step_return = discounted_returns(table, valid, gamma)  # G_t, [E, T]
    bad = torch.zeros(num_steps, dtype=torch.bool) if invalid is None else invalid.to(torch.bool)
    penalty = bad.to(torch.float64) * invalid_penalty

    row_r = ep_return[turn_episode] - penalty
    row_g = step_return[turn_episode, turn_number] - penalty

    num_groups = int(episode_group.max()) + 1 if num_eps else 0
    row_group = episode_group[turn_episode]
    eps_per_group = torch.bincount(episode_group, minlength=num_groups)

    # A_E (GiGPO Eq. 3): statistics over step rows or over one return per episode.
    if episode_stats == "steps":
        _, mean, std = group_mean_std(row_r, row_group, num_groups)
    else:
        _, mean, std = group_mean_std(ep_return, episode_group, num_groups)
    alone = eps_per_group < 2
    mean = torch.where(alone, torch.zeros_like(mean), mean)
    std = torch.where(alone, torch.ones_like(std), std)
    adv_e = row_r - mean[row_group]
    if norm == "mean_std":
        adv_e = adv_e / (std[row_group] + eps)
    elif norm != "mean":
        raise ValueError(f"norm={norm!r} is not one of 'mean_std', 'mean'.")

    # A_S (GiGPO Eq. 6-8): step groups keyed by (episode group, anchor), across episodes and time steps.
    adv_s = group_normalize(row_g, step_group, int(step_group.max()) + 1, norm=norm, eps=eps, singleton="zero")
    return adv_e + omega * adv_s
