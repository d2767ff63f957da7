"""From collated episodes to the PPO step's inputs: advantages over exact groups, then ResRL per turn.

Groups are exact: advantages are computed over every episode of the batch before any micro-batching, and the
ResRL subspace of a group is fitted on all of its positive tokens, gathered from the whole batch's forward
(verl's release fits it per micro-batch, which cuts groups; DESIGN.md asks us to do it right).

Per turn (Contract 7): every assistant span carries its own turn's advantage, so in ``window`` mode each turn is a
row (a sample) and in ``concat`` mode the token weights apply span by span inside one row. Positive tokens are
the valid tokens with advantage > 0, negative ones advantage < 0 (``algo.resrl.positive=advantage``), or all tokens
of an episode whose return is > 0 (``score``, the paper's single-turn rule).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from resrl_agent.algorithms.advantages import dapo_keep_mask, dapo_overlong_penalty, grpo, nsr, psr, w_reinforce
from resrl_agent.algorithms.gigpo import gigpo_advantages
from resrl_agent.algorithms.resrl import alignment_bound, reweight_advantages, token_weights
from resrl_agent.config import AlgoConfig, RunConfig
from resrl_agent.trainer.learner import Learner
from resrl_agent.types import Batch, Episode, collate

__all__ = ["TurnAdvantages", "apply_resrl", "compute_turn_advantages", "tensor_stats", "train_on_episodes"]


@dataclass(frozen=True)
class TurnAdvantages:
    """One advantage per turn of the batch's turn table, and which turns enter the loss."""

    values: torch.Tensor  # [N] float32
    keep: torch.Tensor  # [N] bool: False for turns of samples an estimator drops (NSR, PSR, DAPO)


def tensor_stats(prefix: str, values: torch.Tensor) -> dict[str, float]:
    """mean/std/min/max of a 1-D tensor under ``prefix/``; empty tensors give nothing."""
    if values.numel() == 0:
        return {}
    v = values.double()
    return {
        f"{prefix}_mean": float(v.mean()),
        f"{prefix}_std": float(v.std()) if v.numel() > 1 else 0.0,
        f"{prefix}_min": float(v.min()),
        f"{prefix}_max": float(v.max()),
    }


def compute_turn_advantages(
    batch: Batch, episodes: Sequence[Episode], algo: AlgoConfig, *, max_response_tokens: int | None = None
) -> tuple[TurnAdvantages, dict[str, float]]:
    """Advantages of every turn with the configured estimator, over the batch's exact groups.

    Outcome estimators (GRPO, NSR, PSR, W-REINFORCE, DAPO) score an episode by its return and give that
    advantage to each of its turns; GiGPO gives each turn its own A_E + omega A_S.
    """
    group_ids = [e.group_id for e in episodes]
    returns = batch.episode_return.clone()  # [E]
    keep_episode = torch.ones(len(episodes), dtype=torch.bool)
    metrics: dict[str, float] = {}
    match algo.advantage:
        case "gigpo":
            g = algo.gigpo
            per_turn = gigpo_advantages(
                [[t.reward for t in e.turns] for e in episodes],
                group_ids,
                [[t.anchor for t in e.turns] for e in episodes],
                invalid=[[not t.format_valid for t in e.turns] for e in episodes],
                gamma=g.gamma,
                omega=g.omega,
                norm=g.norm,
                episode_stats=g.episode_stats,
                invalid_penalty=g.invalid_penalty,
            )
            flat = torch.tensor(
                [per_turn[e][k] for e, k in zip(batch.turn_episode.tolist(), batch.turn_number.tolist(), strict=True)],
                dtype=torch.float32,
            )
            sizes = torch.bincount(batch.turn_anchor_idx)
            metrics["gigpo/anchor_group_size_mean"] = float(sizes[sizes > 0].float().mean()) if sizes.numel() else 0.0
            metrics["gigpo/singleton_anchor_frac"] = float((sizes == 1).sum()) / max(int((sizes > 0).sum()), 1)
            return TurnAdvantages(flat, torch.ones_like(flat, dtype=torch.bool)), metrics
        case "grpo":
            adv_e = grpo(returns, group_ids)
        case "nsr":
            adv_e, keep_episode = nsr(returns)
        case "psr":
            adv_e, keep_episode = psr(returns)
        case "w_reinforce":
            adv_e = w_reinforce(returns)
        case "dapo":
            # dynamic sampling looks at the scores themselves: a group that is all right (or all wrong) is dropped
            # even when the overlong penalty makes its shaped rewards differ (DAPO filters on accuracy)
            keep_episode = dapo_keep_mask(returns, group_ids)
            if algo.overlong_buffer > 0:
                if max_response_tokens is None:
                    raise ValueError("dapo's overlong penalty needs max_response_tokens")
                lengths = [sum(len(t.response_ids) for t in e.turns) for e in episodes]
                returns = returns + dapo_overlong_penalty(
                    lengths, max_len=max_response_tokens, buffer=min(algo.overlong_buffer, max_response_tokens)
                )
            adv_e = grpo(returns, group_ids)
            metrics["dapo/kept_group_frac"] = float(keep_episode.float().mean()) if len(episodes) else 0.0
        case other:  # pragma: no cover - the config's Literal rules this out
            raise ValueError(f"unknown advantage estimator {other!r}")
    adv_e = adv_e.to(torch.float32)
    values = adv_e[batch.turn_episode]
    keep = keep_episode[batch.turn_episode]
    return TurnAdvantages(torch.where(keep, values, torch.zeros_like(values)), keep), metrics


def apply_resrl(
    token_adv: torch.Tensor,
    loss_mask: torch.Tensor,
    hidden: torch.Tensor | None,
    row_group: torch.Tensor,
    row_score: torch.Tensor,
    algo: AlgoConfig,
    *,
    generator: torch.Generator | None = None,
    alignment: bool = True,
) -> tuple[torch.Tensor, dict[str, float]]:
    """ResRL's token weights per group, then the advantage transform; returns reweighted [B, T] advantages.

    Args:
        token_adv: [B, T] per-token advantages (each span its own turn's advantage).
        loss_mask: [B, T] bool, the tokens that enter the loss.
        hidden: [n, d] penultimate states of ``loss_mask``'s tokens in row-major order (Contract 8 alignment),
            from the learner's forward.
        row_group: [B] long, the ResRL group of each row (its episode group).
        row_score: [B] float, the row's episode return (``algo.resrl.positive=score``: positive when > 0).
    """
    r = algo.resrl
    if r.reweight == "none":
        return token_adv, {}
    if hidden is None:
        raise ValueError("algo.resrl.reweight=resrl needs the penultimate hidden states of the loss tokens")
    n = int(loss_mask.sum())
    if hidden.shape[0] != n:
        raise ValueError(f"hidden has {hidden.shape[0]} rows for {n} loss tokens")
    if r.positive == "advantage":
        positive = loss_mask & (token_adv > 0)
        negative = loss_mask & (token_adv < 0)
    else:
        row_pos = row_score > 0  # [B]
        positive = loss_mask & row_pos[:, None]
        negative = loss_mask & ~row_pos[:, None]
    rows, _ = loss_mask.nonzero(as_tuple=True)
    token_group = row_group[rows].tolist()  # the ResRL group of a token: its episode group
    # Each loss token is a row of length 1, so the hidden states stay compact ([n, 1, d], no padding).
    tok_pos = positive[loss_mask][:, None]
    tok_neg = negative[loss_mask][:, None]
    ones = torch.ones_like(tok_pos)
    h = hidden[:, None, :]
    kwargs = {"rank": r.rank, "max_pos_tokens": r.max_pos_tokens, "svd": r.svd, "niter": r.niter}
    w_tok = token_weights(
        h,
        ones.to(h.device),
        tok_pos.to(h.device),
        token_group,
        negative=tok_neg.to(h.device),
        q_low=r.q_low,
        q_high=r.q_high,
        min_weight=r.min_weight,
        generator=generator,
        **kwargs,  # type: ignore[arg-type]
    )[:, 0].cpu()
    weights = torch.ones_like(token_adv)
    weights[loss_mask] = w_tok
    out = reweight_advantages(token_adv, weights, positive, pos_scale=r.pos_scale)
    metrics: dict[str, float] = {
        "resrl/pos_tokens": float(tok_pos.sum()),
        "resrl/neg_tokens": float(tok_neg.sum()),
    }
    neg_w = w_tok[tok_neg[:, 0]]
    metrics.update(tensor_stats("resrl/neg_weight", neg_w))
    metrics["resrl/neg_reweighted_frac"] = float((neg_w < 1).float().mean()) if neg_w.numel() else 0.0
    if alignment:
        stats = alignment_bound(
            h, ones.to(h.device), tok_pos.to(h.device), token_group, negative=tok_neg.to(h.device), **kwargs
        )
        metrics.update(stats.summary())
    return out, metrics


def _mean_metrics(records: list[dict[str, float]]) -> dict[str, float]:
    keys = dict.fromkeys(k for r in records for k in r)
    out = {}
    for key in keys:
        values = [r[key] for r in records if key in r]
        out[key] = max(values) if key.endswith("_max") else sum(values) / len(values)
    return out


def train_on_episodes(
    learner: Learner, episodes: Sequence[Episode], config: RunConfig, *, pad_id: int = 0
) -> dict[str, float]:
    """One RL update: collate, advantages over exact groups, recomputed old logprobs + hidden states, ResRL, PPO.

    The old logprobs and the hidden states come from one forward of the current policy over the whole batch
    (Contract 6: the learner recomputes them); the PPO mini-batches then reuse them, so ResRL's groups are never
    cut by a micro-batch.
    """
    mode = config.rollout.context_mode
    # An episode that ended with env_error says nothing about the policy (its env crashed, hung or lost its
    # server): it enters neither the group statistics nor the loss; the rest of its group is trained on as usual.
    errored = sum(e.stop_reason == "env_error" for e in episodes)
    episodes = [e for e in episodes if e.stop_reason != "env_error"]
    if not episodes:
        return {"update/env_error_episodes": float(errored), "update/rows": 0.0, "update/skipped": 1.0}
    batch = collate(episodes, mode, pad_id=pad_id)
    turn_adv, metrics = compute_turn_advantages(
        batch, episodes, config.algo, max_response_tokens=config.rollout.max_new_tokens * config.rollout.max_turns
    )
    metrics["update/env_error_episodes"] = float(errored)
    metrics.update(tensor_stats("adv/turn", turn_adv.values[turn_adv.keep]))
    token_adv = batch.expand_turn_values(turn_adv.values)
    keep_tok = batch.loss_mask & turn_adv.keep[batch.span_idx.clamp(min=0)]
    rows = keep_tok.any(dim=1).nonzero(as_tuple=True)[0]
    metrics["update/rows"] = float(rows.numel())
    metrics["update/tokens"] = float(keep_tok.sum())
    if rows.numel() == 0:
        metrics["update/skipped"] = 1.0
        return metrics
    width = int(batch.attention_mask[rows].sum(dim=1).max())
    ids = batch.input_ids[rows, :width]
    attn = batch.attention_mask[rows, :width]
    mask = keep_tok[rows, :width]
    adv = token_adv[rows, :width]
    rollout_logp = batch.old_logprobs[rows, :width]
    resrl_on = config.algo.resrl.reweight == "resrl"
    start = time.perf_counter()
    old_logp, entropy, hidden = learner.compute_logprobs(ids, attn, mask, with_hidden=resrl_on)
    metrics["time/old_logprob_s"] = time.perf_counter() - start
    # Contract 6: the rollout's logprobs and the learner's recomputation agree up to numerics (same weights).
    metrics["rollout/logprob_abs_diff"] = float((old_logp - rollout_logp)[mask].abs().mean())
    metrics["rollout/entropy"] = float(entropy[mask].mean())
    start = time.perf_counter()
    adv, resrl_metrics = apply_resrl(
        adv,
        mask,
        hidden,
        batch.group_idx[rows],
        batch.episode_return[batch.row_episode[rows]],
        config.algo,
        generator=learner.generator,
    )
    metrics.update(resrl_metrics)
    metrics["time/resrl_s"] = time.perf_counter() - start
    metrics.update(tensor_stats("adv/token", adv[mask]))
    ref = None
    if config.algo.loss.kl_coef > 0:
        ref = learner.reference_logprobs(ids, attn, mask)
    steps: list[dict[str, float]] = []
    num_mini = min(config.trainer.mini_batches, int(rows.numel()))
    for _ in range(config.trainer.ppo_epochs):
        order = torch.randperm(int(rows.numel()), generator=learner.generator)
        for chunk in torch.tensor_split(order, num_mini):
            sel = chunk.sort().values
            steps.append(
                learner.ppo_step(
                    ids[sel],
                    attn[sel],
                    mask[sel],
                    old_logp[sel],
                    adv[sel],
                    ref_logprobs=None if ref is None else ref[sel],
                )
            )
    metrics.update(_mean_metrics(steps))
    metrics["guard/skipped_steps"] = sum(s["guard/skipped_step"] for s in steps)
    return metrics
